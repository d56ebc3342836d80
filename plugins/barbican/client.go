package barbican

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// newClient returns a key-manager client: for noauth one that sends X-Project-Id, else
// one authenticated with Keystone (re-authenticating when its token expires).
func newClient(ctx context.Context, s settings) (*gophercloud.ServiceClient, error) {
	httpClient := http.Client{Timeout: s.timeout}
	if s.auth.Type == AuthNoAuth {
		provider := &gophercloud.ProviderClient{HTTPClient: httpClient}
		endpoint := gophercloud.NormalizeURL(s.auth.Endpoint)
		return &gophercloud.ServiceClient{
			ProviderClient: provider,
			Endpoint:       endpoint,
			ResourceBase:   endpoint + "v1/",
			Type:           "key-manager",
			MoreHeaders:    map[string]string{"X-Project-Id": s.auth.ProjectID},
		}, nil
	}
	ao, eo, err := authOptions(s.auth)
	if err != nil {
		return nil, err
	}
	ao.AllowReauth = true
	provider, err := openstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "config.auth.auth_url", "%v", err)
	}
	provider.HTTPClient = httpClient
	if err := openstack.Authenticate(ctx, provider, ao); err != nil {
		return nil, classify(err, "authenticate to Keystone", ao.IdentityEndpoint)
	}
	client, err := openstack.NewKeyManagerV1(provider, eo)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, ao.IdentityEndpoint, "no key-manager endpoint in the catalog: %v", err)
	}
	if s.auth.Endpoint != "" {
		client.Endpoint = gophercloud.NormalizeURL(s.auth.Endpoint)
		client.ResourceBase = client.Endpoint + "v1/"
	}
	return client, nil
}

// authOptions builds Keystone credentials the way each auth type reads them.
func authOptions(a Auth) (gophercloud.AuthOptions, gophercloud.EndpointOpts, error) {
	eo := gophercloud.EndpointOpts{Region: a.Region}
	switch a.Type {
	case AuthPassword:
		ao := gophercloud.AuthOptions{
			IdentityEndpoint: a.AuthURL, Username: a.Username, Password: a.Password,
			DomainName: orDefault(a.UserDomainName),
		}
		ao.Scope = &gophercloud.AuthScope{ProjectID: a.ProjectID, ProjectName: a.ProjectName}
		if a.ProjectID == "" {
			ao.Scope.DomainName = orDefault(a.ProjectDomainName)
		}
		return ao, eo, nil
	case AuthApplicationCredential:
		return gophercloud.AuthOptions{
			IdentityEndpoint: a.AuthURL, ApplicationCredentialID: a.ApplicationCredentialID,
			ApplicationCredentialName: a.ApplicationCredentialName, ApplicationCredentialSecret: a.ApplicationCredentialSecret,
			Username: a.Username, DomainName: userDomain(a),
		}, eo, nil
	case AuthCloud:
		var opts []clouds.ParseOption
		if a.Cloud != "" {
			opts = append(opts, clouds.WithCloudName(a.Cloud))
		}
		if a.Region != "" {
			opts = append(opts, clouds.WithRegion(a.Region))
		}
		ao, cloudEO, _, err := clouds.Parse(opts...)
		if err != nil {
			return ao, eo, sdk.Errorf(sdk.CodeInvalidArgument, "config.auth.cloud", "clouds.yaml: %v", err)
		}
		return ao, cloudEO, nil
	default: // env
		fromEnv, err := authFromEnv(a)
		if err != nil {
			return gophercloud.AuthOptions{}, eo, err
		}
		return authOptions(fromEnv)
	}
}

// authFromEnv reads the OS_* variables as openstackclient's openrc files set them
// (OS_USER_DOMAIN_NAME and OS_PROJECT_DOMAIN_NAME, falling back to OS_DOMAIN_NAME), and
// returns the password or application-credential settings they describe. Settings in
// the config (endpoint, region) win over the environment.
func authFromEnv(cfg Auth) (Auth, error) {
	env := os.Getenv
	first := func(names ...string) string {
		for _, n := range names {
			if v := env(n); v != "" {
				return v
			}
		}
		return ""
	}
	a := Auth{
		Type: AuthPassword, Endpoint: cfg.Endpoint, Region: cfg.Region,
		AuthURL: env("OS_AUTH_URL"), Username: env("OS_USERNAME"), Password: env("OS_PASSWORD"),
		ProjectName: first("OS_PROJECT_NAME", "OS_TENANT_NAME"), ProjectID: first("OS_PROJECT_ID", "OS_TENANT_ID"),
		UserDomainName:              first("OS_USER_DOMAIN_NAME", "OS_DOMAIN_NAME"),
		ProjectDomainName:           first("OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME"),
		ApplicationCredentialID:     env("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   env("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: env("OS_APPLICATION_CREDENTIAL_SECRET"),
	}
	if a.Region == "" {
		a.Region = env("OS_REGION_NAME")
	}
	if a.ApplicationCredentialSecret != "" {
		a.Type = AuthApplicationCredential
	}
	if err := a.check(); err != nil {
		var e *sdk.Error
		if errors.As(err, &e) {
			return a, sdk.Errorf(sdk.CodeInvalidArgument, "OS_* environment", "%s (%s)", e.Msg,
				"as "+strings.ToUpper("OS_"+strings.TrimPrefix(e.Ref, "config.auth.")))
		}
		return a, err
	}
	return a, nil
}

func orDefault(domain string) string {
	if domain == "" {
		return "Default"
	}
	return domain
}

func userDomain(a Auth) string {
	if a.ApplicationCredentialID != "" {
		return ""
	}
	return orDefault(a.UserDomainName)
}

// refKind is what a reference points at.
type refKind string

const (
	kindContainer refKind = "containers"
	kindSecret    refKind = "secrets"
)

// parseRef takes a Barbican href (".../v1/containers/<id>", ".../v1/secrets/<id>") and
// returns its kind and id. Requests go to the configured endpoint, not the href's host.
func parseRef(ref string) (refKind, string, error) {
	parts := strings.Split(strings.TrimRight(ref, "/"), "/")
	if len(parts) >= 2 {
		kind, id := refKind(parts[len(parts)-2]), parts[len(parts)-1]
		if (kind == kindContainer || kind == kindSecret) && validID(id) {
			return kind, id, nil
		}
	}
	return "", "", sdk.Errorf(sdk.CodeInvalidArgument, ref, "not a Barbican reference: want .../v1/containers/<uuid> or .../v1/secrets/<uuid>")
}

// validID accepts a UUID's characters only, so an id never changes the request's path.
func validID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '-') {
			return false
		}
	}
	return true
}
