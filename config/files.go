package config

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
)

// CheckFiles checks what the daemon will need from the file system, without
// contacting anything: the credential, CA and token files are readable and
// well-formed. (The state file is state/bolt's: bolt.CheckWritable,
// which the CLI's preflight applies beside this.) It returns a
// *ValidationError naming, for each problem, the key and the file; nil when
// all is well. `calpresence validate` and `run` apply it alike, so that a
// configuration validate passes does not fail when run starts.
//
// Load does not call it: a configuration is often checked away from the
// machine (and the secrets) it runs on, and Load must not depend on them.
//
// What is checked (the keys that are set and used):
//   - graph.certificate_file (auth client_certificate): readable; PEM with
//     a certificate and the RSA private key that matches it (Entra signs
//     client assertions with RS256, and azidentity reads keys in
//     "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" blocks only). A file that
//     is not PEM is taken for PKCS#12; the Graph client parses that one.
//     With certificate_password set, azidentity reads the file as PKCS#12
//     only, so a PEM file with a password is an error.
//   - graph.ca_file: readable PEM with at least one certificate, each
//     certificate parsing.
//   - graph.token_file (auth workload_identity), else the file
//     AZURE_FEDERATED_TOKEN_FILE names: readable and not empty.
//   - schedule.ca_file: as graph.ca_file (the feeds' extra roots).
//   - server.admin_token_file: readable and not empty (an empty token would
//     turn the admin check off).
//   - selfservice.cookie_key_file (self-service on): readable, at least
//     MinCookieKey bytes.
//
// In dry_run nothing calls Graph and no state is opened, so only the
// feeds' CA and the admin token are checked (graph.client_secret_file is read by Load already).
func (c *Config) CheckFiles() error {
	k := &checker{}
	g := c.Graph
	if !g.DryRun {
		if g.Auth == AuthClientCertificate && g.CertificateFile != "" {
			checkCertificate(k, "graph.certificate_file", g.CertificateFile, g.CertificatePassword != "")
		}
		if g.CAFile != "" {
			checkCAFile(k, "graph.ca_file", g.CAFile)
		}
		if g.Auth == AuthWorkloadIdentity {
			switch env := os.Getenv("AZURE_FEDERATED_TOKEN_FILE"); {
			case g.TokenFile != "":
				checkNotEmpty(k, "graph.token_file", g.TokenFile)
			case env != "":
				checkNotEmpty(k, "graph.token_file", env)
			default:
				k.add("graph.token_file", "required with auth workload_identity when AZURE_FEDERATED_TOKEN_FILE is not set")
			}
		}
	}
	if c.Schedule.CAFile != "" {
		// Feeds are read in a dry run too.
		checkCAFile(k, "schedule.ca_file", c.Schedule.CAFile)
	}
	if c.Server.AdminTokenFile != "" {
		checkNotEmpty(k, "server.admin_token_file", c.Server.AdminTokenFile)
	}
	if c.Selfservice.Enabled() && c.Selfservice.CookieKeyFile != "" {
		checkCookieKey(k, c.Selfservice.CookieKeyFile)
	}
	if len(k.problems) > 0 {
		return newValidationError(c.Path, k.problems)
	}
	return nil
}

// readFile reads path, or adds a problem at key and returns false.
func readFile(k *checker, key, path string) ([]byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		k.add(key, "%v", err)
		return nil, false
	}
	return data, true
}

func checkNotEmpty(k *checker, key, path string) {
	data, ok := readFile(k, key, path)
	if ok && len(bytes.TrimSpace(data)) == 0 {
		k.add(key, "%s is empty", path)
	}
}

// pemBlocks returns the PEM blocks in data.
func pemBlocks(data []byte) []*pem.Block {
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return blocks
		}
		blocks = append(blocks, b)
	}
}

func checkCAFile(k *checker, key, path string) {
	data, ok := readFile(k, key, path)
	if !ok {
		return
	}
	n := 0
	for i, b := range pemBlocks(data) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			k.add(key, "%s: certificate %d does not parse: %v", path, i+1, err)
			return
		}
		n++
	}
	if n == 0 {
		k.add(key, "%s: no PEM certificate found (want one or more \"CERTIFICATE\" blocks)", path)
	}
}

func checkCertificate(k *checker, key, path string, password bool) {
	data, ok := readFile(k, key, path)
	if !ok {
		return
	}
	blocks := pemBlocks(data)
	if len(blocks) == 0 {
		if len(bytes.TrimSpace(data)) == 0 {
			k.add(key, "%s is empty", path)
		}
		return // PKCS#12: the Graph client parses it (with certificate_password)
	}
	if password {
		k.add(key, "%s is PEM, but certificate_password is set: azidentity reads a password-protected certificate as PKCS#12 (.pfx) only; use an unencrypted PEM without the password, or the .pfx", path)
		return
	}
	var certs []*x509.Certificate
	var keys []any
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				k.add(key, "%s: certificate does not parse: %v", path, err)
				return
			}
			certs = append(certs, c)
		case "PRIVATE KEY":
			pk, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				k.add(key, "%s: private key does not parse: %v", path, err)
				return
			}
			keys = append(keys, pk)
		case "RSA PRIVATE KEY":
			pk, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				k.add(key, "%s: private key does not parse: %v", path, err)
				return
			}
			keys = append(keys, pk)
		case "ENCRYPTED PRIVATE KEY":
			k.add(key, "%s: the private key is encrypted; azidentity reads unencrypted PEM keys only (or a PKCS#12 file with certificate_password)", path)
			return
		case "EC PRIVATE KEY":
			k.add(key, "%s: an EC key; Entra client certificates need an RSA key", path)
			return
		}
	}
	switch {
	case len(certs) == 0:
		k.add(key, "%s: no certificate (want a PEM \"CERTIFICATE\" block)", path)
	case len(keys) == 0:
		k.add(key, "%s: no private key (want a PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\" block beside the certificate)", path)
	case len(keys) > 1:
		k.add(key, "%s: %d private keys; want one", path, len(keys))
	default:
		rk, ok := keys[0].(*rsa.PrivateKey)
		if !ok {
			k.add(key, "%s: a %T; Entra client certificates need an RSA key", path, keys[0])
			return
		}
		for _, c := range certs {
			if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&rk.PublicKey) {
				return
			}
		}
		k.add(key, "%s: the private key matches none of the certificates", path)
	}
}
