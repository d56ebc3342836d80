package barbican

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// TestThroughKeystone authenticates with a real Keystone (password, application
// credential, clouds.yaml), finds Barbican in its catalog, and stores, fetches and
// deletes a certificate container through it.
func TestThroughKeystone(t *testing.T) {
	ks := testservers.StartKeystone(t)
	m := testservers.NewMaterial(t)
	ctx := context.Background()
	appID, appSecret := applicationCredential(t, ks)
	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	os.WriteFile(cloudsYAML, []byte(`clouds:
  test:
    auth:
      auth_url: `+ks.AuthURL+`
      username: admin
      password: `+ks.AdminPassword+`
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
`), 0o600)
	t.Setenv("OS_CLIENT_CONFIG_FILE", cloudsYAML)

	auths := map[string]map[string]any{
		"password": {"type": "password", "auth_url": ks.AuthURL, "username": "admin", "password": ks.AdminPassword,
			"project_name": "admin", "region": "RegionOne"},
		"application credential": {"type": "application_credential", "auth_url": ks.AuthURL,
			"application_credential_id": appID, "application_credential_secret": appSecret},
		"clouds.yaml":    {"type": "cloud", "cloud": "test"},
		"OS_* variables": {"type": "env"},
	}
	for name, auth := range auths {
		t.Run(name, func(t *testing.T) {
			if auth["type"] == "env" {
				for k, v := range map[string]string{"OS_AUTH_URL": ks.AuthURL, "OS_USERNAME": "admin", "OS_PASSWORD": ks.AdminPassword,
					"OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"} {
					t.Setenv(k, v)
				}
			}
			b := configure(t, map[string]any{"auth": auth})
			ref, err := b.StoreSecret(ctx, "via-keystone", sdk.Secret{CertificatePEM: m.Cert, Key: m.Key})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ref, ks.Barbican.URL) {
				t.Errorf("container %s is not on the catalog's Barbican %s", ref, ks.Barbican.URL)
			}
			s, err := b.FetchSecret(ctx, ref)
			if err != nil || !bytes.Equal(s.CertificatePEM, m.Cert) || !bytes.Equal(s.Key, m.Key) {
				t.Fatalf("fetch through Keystone: %v", err)
			}
			if err := b.DeleteSecret(ctx, ref); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("a wrong password is permission denied", func(t *testing.T) {
		b := configure(t, map[string]any{"auth": map[string]any{"type": "password", "auth_url": ks.AuthURL,
			"username": "admin", "password": "wrong", "project_name": "admin"}, "retry_deadline": "2s"})
		_, err := b.FetchSecret(ctx, ks.Barbican.URL+"/v1/containers/0b0e6cd8-0000-4000-8000-000000000000")
		if !sdk.IsCode(err, sdk.CodePermissionDenied) || !strings.Contains(err.Error(), "authenticate to Keystone") {
			t.Fatalf("err = %v, want permission denied from Keystone", err)
		}
	})

	t.Run("Barbican behind Keystone refuses a request without a token", func(t *testing.T) {
		b := configure(t, map[string]any{"auth": map[string]any{"type": "noauth", "endpoint": ks.Barbican.URL, "project_id": "admin"}})
		_, err := b.FetchSecret(ctx, ks.Barbican.URL+"/v1/containers/0b0e6cd8-0000-4000-8000-000000000000")
		if !sdk.IsCode(err, sdk.CodePermissionDenied) || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("err = %v, want permission denied (HTTP 401)", err)
		}
	})
}

func configure(t *testing.T, cfg map[string]any) *Backend {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: raw}); err != nil {
		t.Fatal(err)
	}
	return b
}

// applicationCredential makes one for the admin user through Keystone's API.
func applicationCredential(t *testing.T, ks *testservers.Keystone) (id, secret string) {
	t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"` +
		ks.AdminPassword + `"}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}`
	resp, err := http.Post(ks.AuthURL+"/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token struct {
			User struct{ ID string } `json:"user"`
		} `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("POST", ks.AuthURL+"/users/"+tok.Token.User.ID+"/application_credentials",
		strings.NewReader(`{"application_credential":{"name":"tlsrelay-test"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", resp.Header.Get("X-Subject-Token"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cred struct {
		Credential struct{ ID, Secret string } `json:"application_credential"`
	}
	json.NewDecoder(resp.Body).Decode(&cred)
	if resp.StatusCode != 201 || cred.Credential.ID == "" {
		t.Fatalf("create application credential: HTTP %d", resp.StatusCode)
	}
	return cred.Credential.ID, cred.Credential.Secret
}
