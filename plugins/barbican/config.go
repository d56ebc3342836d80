package barbican

import (
	"os"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Config is the backend's `config:` section.
type Config struct {
	Auth Auth `json:"auth"`
	// Timeout bounds one HTTP request (Go duration). Default 10s.
	Timeout string `json:"timeout"`
	// RetryDeadline bounds the retries of an unavailable Barbican or Keystone. Default 30s.
	RetryDeadline string `json:"retry_deadline"`
	// Consumer, when set, is registered on every container fetched, so Barbican knows
	// who uses it (as Octavia registers its load balancers).
	Consumer *Consumer `json:"consumer"`
	// StoreFormat is how StoreSecret stores: pkcs12 (one binary secret holding the
	// certificate, its key and chain, without a password: what Octavia stores and reads
	// by default) or container (a certificate container over one secret a part, which
	// Octavia reads through its legacy path). Default pkcs12.
	StoreFormat string `json:"store_format"`
}

// The store formats.
const (
	StorePKCS12    = "pkcs12"
	StoreContainer = "container"
)

// Auth says how to reach and authenticate to Barbican.
type Auth struct {
	// Type: noauth (endpoint + project_id, for development), password,
	// application_credential, cloud (clouds.yaml) or env (OS_* variables). Default: cloud
	// when OS_CLOUD is set, env when OS_AUTH_URL is set.
	Type string `json:"type"`
	// Endpoint is Barbican's URL: required for noauth, else it overrides the catalog.
	Endpoint  string `json:"endpoint"`
	ProjectID string `json:"project_id"`
	// Keystone.
	AuthURL                     string `json:"auth_url"`
	Username                    string `json:"username"`
	UserDomainName              string `json:"user_domain_name"`
	Password                    string `json:"password"`
	ProjectName                 string `json:"project_name"`
	ProjectDomainName           string `json:"project_domain_name"`
	ApplicationCredentialID     string `json:"application_credential_id"`
	ApplicationCredentialName   string `json:"application_credential_name"`
	ApplicationCredentialSecret string `json:"application_credential_secret"`
	// Cloud names the clouds.yaml entry for type cloud (default OS_CLOUD).
	Cloud  string `json:"cloud"`
	Region string `json:"region"`
}

// Consumer identifies this deployment to Barbican.
type Consumer struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// The auth types.
const (
	AuthNoAuth                = "noauth"
	AuthPassword              = "password"
	AuthApplicationCredential = "application_credential"
	AuthCloud                 = "cloud"
	AuthEnv                   = "env"
)

// settings is Config checked and with its defaults applied.
type settings struct {
	auth          Auth
	timeout       time.Duration
	retryDeadline time.Duration
	consumer      *Consumer
	storeFormat   string
}

func parseConfig(raw []byte) (settings, error) {
	cfg := Config{Timeout: "10s", RetryDeadline: "30s", StoreFormat: StorePKCS12}
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return settings{}, err
	}
	if cfg.StoreFormat != StorePKCS12 && cfg.StoreFormat != StoreContainer {
		return settings{}, sdk.Errorf(sdk.CodeInvalidArgument, "config.store_format", "%q is not pkcs12 or container", cfg.StoreFormat)
	}
	s := settings{auth: cfg.Auth, consumer: cfg.Consumer, storeFormat: cfg.StoreFormat}
	var err error
	if s.timeout, err = positive("config.timeout", cfg.Timeout); err != nil {
		return settings{}, err
	}
	if s.retryDeadline, err = positive("config.retry_deadline", cfg.RetryDeadline); err != nil {
		return settings{}, err
	}
	if s.auth.Type == "" {
		s.auth.Type = defaultAuthType()
	}
	if err := s.auth.check(); err != nil {
		return settings{}, err
	}
	if c := cfg.Consumer; c != nil && (c.Name == "" || c.URL == "") {
		return settings{}, sdk.Errorf(sdk.CodeInvalidArgument, "config.consumer", "needs both name and url")
	}
	return s, nil
}

func defaultAuthType() string {
	switch {
	case os.Getenv("OS_CLOUD") != "":
		return AuthCloud
	case os.Getenv("OS_AUTH_URL") != "":
		return AuthEnv
	}
	return ""
}

// check reports the first missing or contradictory setting, by key.
func (a Auth) check() error {
	need := func(key, value string) error {
		if value == "" {
			return sdk.Errorf(sdk.CodeInvalidArgument, "config.auth."+key, "auth type %s needs %s", a.Type, key)
		}
		return nil
	}
	var errs []error
	switch a.Type {
	case AuthNoAuth:
		errs = append(errs, need("endpoint", a.Endpoint), need("project_id", a.ProjectID))
	case AuthPassword:
		errs = append(errs, need("auth_url", a.AuthURL), need("username", a.Username), need("password", a.Password))
		if a.ProjectName == "" && a.ProjectID == "" {
			errs = append(errs, need("project_name", ""))
		}
	case AuthApplicationCredential:
		errs = append(errs, need("auth_url", a.AuthURL), need("application_credential_secret", a.ApplicationCredentialSecret))
		if a.ApplicationCredentialID == "" && (a.ApplicationCredentialName == "" || a.Username == "") {
			errs = append(errs, need("application_credential_id", ""))
		}
	case AuthCloud, AuthEnv:
	case "":
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.auth.type", "not set, and neither OS_CLOUD nor OS_AUTH_URL is in the environment")
	default:
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.auth.type", "%q is not one of %s", a.Type,
			strings.Join([]string{AuthNoAuth, AuthPassword, AuthApplicationCredential, AuthCloud, AuthEnv}, ", "))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func positive(key, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, sdk.Errorf(sdk.CodeInvalidArgument, key, "%q is not a positive duration like 10s", s)
	}
	return d, nil
}
