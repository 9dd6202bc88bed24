package ical

import (
	"fmt"
	"strings"
	"time"
)

// LoadZone returns the time zone called name: an IANA name such as
// Europe/Berlin, or a Windows zone ID such as "W. Europe Standard Time"
// (what Outlook, Exchange and Graph's mailbox settings write; any case),
// mapped as CLDR maps it. It is for zones people write in configuration;
// a feed's TZIDs are resolved more leniently.
func LoadZone(name string) (*time.Location, error) {
	if loc := loadIANA(name); loc != nil {
		return loc, nil
	}
	if iana, ok := windowsZones[name]; ok {
		return time.LoadLocation(iana)
	}
	for win, iana := range windowsZones {
		if strings.EqualFold(win, name) {
			return time.LoadLocation(iana)
		}
	}
	return nil, fmt.Errorf("unknown time zone %q", name)
}
