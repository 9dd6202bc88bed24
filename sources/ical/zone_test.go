package ical

import "testing"

func TestLoadZone(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"Europe/Berlin", "Europe/Berlin"},
		{"UTC", "UTC"},
		{"W. Europe Standard Time", "Europe/Berlin"},
		{"w. europe standard time", "Europe/Berlin"},
		{"Eastern Standard Time", "America/New_York"},
		{"America/Atlantis", ""},
		{"Local", ""},
		{"", ""},
	} {
		loc, err := LoadZone(tt.name)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("LoadZone(%q) = %v; want an error", tt.name, loc)
		case tt.want != "" && (err != nil || loc.String() != tt.want):
			t.Errorf("LoadZone(%q) = %v, %v; want %s", tt.name, loc, err, tt.want)
		}
	}
}
