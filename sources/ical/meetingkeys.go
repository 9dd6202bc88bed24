package ical

import (
	"slices"
	"strings"
)

// Meeting key prefixes: a key is "<vendor>:<meeting number>", the number
// in digits only, as the vendors' webhooks name the meeting.
const (
	KeyZoom  = "zoom:"
	KeyWebex = "webex:"
)

// MeetingKeys returns the meeting keys named in text: Zoom meeting numbers
// from join links (https://<sub>.zoom.us/j/<number>, /w/ for webinars,
// zoommtg://…?confno=<number>) and Webex meeting numbers ("Meeting
// number: 2550 123 4567" as Webex invitations print it, and the video
// address <number>@<site>.webex.com) in a text that mentions Webex
// (other vendors print "meeting number" too). Sorted, without repeats.
func MeetingKeys(text ...string) []string {
	var keys []string
	for _, t := range text {
		keys = appendKeys(keys, t)
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// eventKeys is MeetingKeys over the properties of a VEVENT that carry
// join links: LOCATION, DESCRIPTION, URL, CONFERENCE and every X- property
// (Outlook's X-ALT-DESC, Google's X-GOOGLE-CONFERENCE and the like).
func eventKeys(c compProps) []string {
	var keys []string
	for name, props := range c.all {
		switch {
		case name == "LOCATION", name == "DESCRIPTION", name == "URL", name == "CONFERENCE", strings.HasPrefix(name, "X-"):
		default:
			continue
		}
		for i := range props {
			keys = appendKeys(keys, props[i].Value)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// appendKeys appends the keys found in s. It looks further only where a
// vendor is mentioned, and never copies s: descriptions are the bulk of a
// feed's bytes.
func appendKeys(keys []string, s string) []string {
	if s == "" {
		return keys
	}
	if indexFold(s, "zoom") >= 0 {
		keys = zoomKeys(keys, s)
	}
	if indexFold(s, "webex") >= 0 {
		keys = webexKeys(keys, s)
	}
	return keys
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// indexFold is strings.Index ignoring ASCII case, for a lower-case
// needle. It jumps from one candidate first byte to the next with
// strings.IndexByte: a feed's descriptions are long and mostly not links.
func indexFold(s, needle string) int {
	n := len(needle)
	c0, up := needle[0], needle[0]
	if 'a' <= c0 && c0 <= 'z' {
		up = c0 - ('a' - 'A')
	}
	for i := 0; i+n <= len(s); i++ {
		window := s[i : len(s)-n+1]
		j := strings.IndexByte(window, c0)
		if up != c0 {
			limit := window
			if j >= 0 {
				limit = window[:j]
			}
			if k := strings.IndexByte(limit, up); k >= 0 {
				j = k
			}
		}
		if j < 0 {
			return -1
		}
		i += j
		k := 1
		for k < n && lowerASCII(s[i+k]) == needle[k] {
			k++
		}
		if k == n {
			return i
		}
	}
	return -1
}

// zoomKeys finds Zoom meeting numbers in s.
func zoomKeys(keys []string, s string) []string {
	for rest := s; ; {
		i := indexFold(rest, "zoom.us/")
		if i < 0 {
			break
		}
		rest = rest[i+len("zoom.us/"):]
		// zoom.us/j/<n>, zoom.us/w/<n> (webinar), zoom.us/s/<n> (host start link)
		if len(rest) > 2 && strings.IndexByte("jwsJWS", rest[0]) >= 0 && rest[1] == '/' {
			if n := leadingDigits(rest[2:]); isMeetingNumber(n) {
				keys = append(keys, KeyZoom+n)
			}
		}
	}
	for rest := s; ; {
		i := indexFold(rest, "confno=")
		if i < 0 {
			break
		}
		rest = rest[i+len("confno="):]
		if n := leadingDigits(rest); isMeetingNumber(n) {
			keys = append(keys, KeyZoom+n)
		}
	}
	return keys
}

// webexKeys finds Webex meeting numbers in s: "Meeting number: 2550 123
// 4567", "Meeting number (access code): …" and the video address
// "25501234567@site.webex.com".
func webexKeys(keys []string, s string) []string {
	const accessCode = " (access code)"
	for rest := s; ; {
		i := indexFold(rest, "meeting number")
		if i < 0 {
			break
		}
		rest = rest[i+len("meeting number"):]
		r := rest
		if len(r) >= len(accessCode) && strings.EqualFold(r[:len(accessCode)], accessCode) {
			r = r[len(accessCode):]
		}
		r = strings.TrimLeft(r, " \t")
		if !strings.HasPrefix(r, ":") {
			continue
		}
		r = strings.TrimLeft(r[1:], " \t")
		if n := spacedDigits(r); isMeetingNumber(n) {
			keys = append(keys, KeyWebex+n)
		}
	}
	for rest := s; ; {
		i := indexFold(rest, ".webex.com")
		if i < 0 {
			break
		}
		// Walk back over the site name to an '@' preceded by digits.
		j := i
		for j > 0 && (isAlnum(rest[j-1]) || rest[j-1] == '-' || rest[j-1] == '.') {
			j--
		}
		if j > 0 && rest[j-1] == '@' {
			k := j - 1
			for k > 0 && rest[k-1] >= '0' && rest[k-1] <= '9' {
				k--
			}
			if n := rest[k : j-1]; isMeetingNumber(n) && (k == 0 || !isAlnum(rest[k-1])) {
				keys = append(keys, KeyWebex+n)
			}
		}
		rest = rest[i+len(".webex.com"):]
	}
	return keys
}

// isMeetingNumber reports whether the digits n can be a meeting number:
// 9 to 13 of them (Zoom's and Webex's have 9 to 11 today; 13 leaves
// room). A longer run is some other number (a phone
// number with its country code, an order id) and names no meeting, so
// it is dropped rather than cut to a prefix that could name someone
// else's meeting.
func isMeetingNumber(n string) bool {
	return len(n) >= 9 && len(n) <= 13
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// leadingDigits returns the digits s starts with.
func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// spacedDigits returns the digits s starts with, read across single
// spaces ("2550 123 4567"), at most 13 of them.
func spacedDigits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 14; i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == ' ' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' && b.Len() > 0:
		default:
			i = len(s)
		}
	}
	if b.Len() > 13 {
		return ""
	}
	return b.String()
}
