// Package mailaddr is the one form a calendar or webhook address is
// compared and stored in, for every package that keys people by address
// (config's users:, the matches, the resolved identities, the signals).
// It imports nothing of the project, so that config and state may both
// use it.
package mailaddr

import "strings"

// Normalize returns address trimmed of surrounding space, without a
// "mailto:" prefix (in any case, as iCalendar writes CAL-ADDRESS values)
// and lower-cased: Entra compares UPNs and addresses without case.
func Normalize(address string) string {
	a := strings.TrimSpace(address)
	if len(a) >= len("mailto:") && strings.EqualFold(a[:len("mailto:")], "mailto:") {
		a = strings.TrimSpace(a[len("mailto:"):])
	}
	return strings.ToLower(a)
}
