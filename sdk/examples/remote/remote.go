// Package remote is a tlsrelay signer whose CA lives in another service: it forwards
// each CSR to a `cfssl serve` API (/api/v1/cfssl/sign) and reports that service's CA
// (/api/v1/cfssl/info). It claims ca_remote: the group's CA is the service's, every
// leader signs through it, and when the service moves to another CA the group follows.
// It uses the sdk and Go's standard library only.
//
// cfssl's sign API takes no lifetime: the service's profile sets it. The backend
// declares that lifetime (config validity) and refuses at Configure a group that asks
// for another, rather than hand out certificates of another life than asked. Every
// certificate the service returns is checked against the request before it is handed
// on (certutil.SignPlan.Check): a service profile that adds O or OU to the subject, or
// drops a SAN, is an error naming what differs, not a certificate.
//
// The service's profiles must copy only the key and the names from a CSR: a
// "CSRWhitelist" (that key: cfssl reads no "csr_whitelist", and without a whitelist it
// copies the CSR's whole subject and its CA extensions) such as
//
//	"CSRWhitelist": {"PublicKey": true, "PublicKeyAlgorithm": true, "SignatureAlgorithm": true,
//	                 "DNSNames": true, "IPAddresses": true, "URIs": true}
//
// The backend sends the subject (the CSR's common name alone) with each request.
package remote

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Config is the backend's `config:` section.
type Config struct {
	// URL is the cfssl API's base, such as http://127.0.0.1:8888.
	URL string `json:"url"`
	// Validity is the lifetime the service's profiles sign for (their expiry).
	Validity string `json:"validity"`
	// Profiles maps tlsrelay's profiles to the service's profile names. Default: the
	// same names (server, client, peer).
	Profiles map[string]string `json:"profiles"`
	// Timeout bounds each call to the service. Default 10s.
	Timeout string `json:"timeout"`
}

// New returns the backend, unconfigured.
func New() sdk.Backend { return &remote{} }

type remote struct {
	sdk.Unimplemented

	mu       sync.Mutex
	url      string
	validity time.Duration
	profiles map[string]string
	client   *http.Client
}

func (r *remote) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "remote", Version: "0.1.0", Capabilities: []sdk.Capability{sdk.CapSignCSR, sdk.CapCA, sdk.CapCARemote}}, nil
}

func (r *remote) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg := Config{Validity: "720h", Timeout: "10s"}
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.url", "%q is not an http(s) URL of a cfssl API", cfg.URL)
	}
	validity, err := time.ParseDuration(cfg.Validity)
	if err != nil || validity <= 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.validity", "%q is not a positive duration", cfg.Validity)
	}
	timeout, err := time.ParseDuration(cfg.Timeout)
	if err != nil || timeout <= 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.timeout", "%q is not a positive duration", cfg.Timeout)
	}
	if req.Validity != 0 && req.Validity != validity {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "config.validity",
			"the remote CA signs for %s (its profile's expiry), but the group asks for %s (certificate.validity): make them agree", validity, req.Validity)
	}
	profiles := map[string]string{}
	for _, p := range sdk.Profiles {
		profiles[string(p)] = string(p)
	}
	for k, v := range cfg.Profiles {
		if !sdk.Profile(k).Valid() {
			return sdk.Errorf(sdk.CodeInvalidArgument, "config.profiles", "%q is not a profile (server, client, peer)", k)
		}
		profiles[k] = v
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.url, r.validity, r.profiles = strings.TrimRight(cfg.URL, "/"), validity, profiles
	r.client = &http.Client{Timeout: timeout}
	return nil
}

// CA is the service's CA, as /api/v1/cfssl/info reports it.
func (r *remote) CA(ctx context.Context) (sdk.CA, error) {
	var out struct {
		Certificate string `json:"certificate"`
	}
	if err := r.call(ctx, "info", map[string]string{}, &out, "ca"); err != nil {
		return sdk.CA{}, err
	}
	if _, err := certutil.ParseCertificates([]byte(out.Certificate)); err != nil {
		return sdk.CA{}, sdk.Errorf(sdk.CodeUnavailable, r.url, "the service's CA: %v", err)
	}
	return sdk.CA{BundlePEM: []byte(out.Certificate)}, nil
}

func (r *remote) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	plan, err := certutil.CheckSignRequest(req, r.lifetime())
	if err != nil {
		return sdk.Certificate{}, err
	}
	plan.Validity = r.lifetime() // what the service signs for, whatever is asked
	ca, err := r.CA(ctx)
	if err != nil {
		return sdk.Certificate{}, err
	}
	cas, _ := certutil.ParseCertificates(ca.BundlePEM)
	var out struct {
		Certificate string `json:"certificate"`
	}
	// The subject is the CN alone, given here: a profile whose CSRWhitelist leaves the
	// subject out copies nothing else of the CSR's (O, OU) into the certificate.
	body := map[string]any{"certificate_request": string(req.CSRPEM), "profile": r.profile(req.Profile),
		"subject": map[string]string{"CN": plan.CSR.Subject.CommonName}}
	if err := r.call(ctx, "sign", body, &out, req.Unit); err != nil {
		return sdk.Certificate{}, err
	}
	if _, err := plan.Check([]byte(out.Certificate), issuer(cas, out.Certificate), req.Unit); err != nil {
		return sdk.Certificate{}, err
	}
	return sdk.Certificate{ChainPEM: []byte(out.Certificate)}, nil
}

// issuer is the CA in cas that the certificate names as its issuer (the service may
// have moved between the two calls: the check then fails and the host retries).
func issuer(cas []*x509.Certificate, certPEM string) *x509.Certificate {
	certs, err := certutil.ParseCertificates([]byte(certPEM))
	if err != nil {
		return cas[0]
	}
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, certs[0].RawIssuer) {
			return ca
		}
	}
	return cas[0]
}

func (r *remote) lifetime() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.validity
}

func (r *remote) profile(p sdk.Profile) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.profiles[string(p)]
}

// call posts body to the cfssl API's endpoint and decodes its result into out. An
// unreachable service or a 5xx is Unavailable (the host retries); the service's refusal
// of a request (4xx, success false) is InvalidArgument, with its message.
func (r *remote) call(ctx context.Context, endpoint string, body any, out any, ref string) error {
	r.mu.Lock()
	url, client := r.url, r.client
	r.mu.Unlock()
	if client == nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "remote", "Configure has not been called")
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/cfssl/"+endpoint, bytes.NewReader(b))
	if err != nil {
		return sdk.Errorf(sdk.CodeInvalidArgument, url, "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, url, "%v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var envelope struct {
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
		Errors  []struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &envelope); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, url, "%s answered %s with %q: %v", endpoint, resp.Status, truncate(raw), err)
	}
	if !envelope.Success || resp.StatusCode >= 300 {
		msg := resp.Status
		for _, e := range envelope.Errors {
			msg += fmt.Sprintf("; %d: %s", e.Code, e.Message)
		}
		if resp.StatusCode >= 500 {
			return sdk.Errorf(sdk.CodeUnavailable, ref, "the cfssl service's %s: %s", endpoint, msg)
		}
		return sdk.Errorf(sdk.CodeInvalidArgument, ref, "the cfssl service refused %s: %s", endpoint, msg)
	}
	if err := json.Unmarshal(envelope.Result, out); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, url, "%s result: %v", endpoint, err)
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
