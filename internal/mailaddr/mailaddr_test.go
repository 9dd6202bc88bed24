package mailaddr

import "testing"

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"alice@contoso.com", "alice@contoso.com"},
		{"Alice@Contoso.COM", "alice@contoso.com"},
		{"  alice@contoso.com\t\n", "alice@contoso.com"},
		{"mailto:alice@contoso.com", "alice@contoso.com"},
		{"MAILTO:Alice@Contoso.com ", "alice@contoso.com"},
		{"MailTo: alice@contoso.com", "alice@contoso.com"},
		{" mailto:alice@contoso.com", "alice@contoso.com"},
		// Only a prefix is stripped, once.
		{"mailto:mailto:alice@contoso.com", "mailto:alice@contoso.com"},
		{"alice.mailto:x@contoso.com", "alice.mailto:x@contoso.com"},
		{"mailto:", ""},
		{"mailto", "mailto"},
		{"", ""},
		{"   ", ""},
		// Not an address at all (an object id): lower-cased, as Entra
		// compares them.
		{"0F1E2D3C-AAAA-BBBB-CCCC-000000000001", "0f1e2d3c-aaaa-bbbb-cccc-000000000001"},
	} {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
