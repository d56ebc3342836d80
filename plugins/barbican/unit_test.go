package barbican

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/tlsrelay/tlsrelay/sdk"
)

func TestParseRef(t *testing.T) {
	for _, tt := range []struct {
		ref  string
		kind refKind
		ok   bool
	}{
		{"http://127.0.0.1:9311/v1/containers/bf82bfe5-43f1-4dd2-8190-4a136d1dd929", kindContainer, true},
		{"https://kms.example/key-manager/v1/secrets/dd8731b3-635f-41ae-b1b9-c7a8e7fae4d9/", kindSecret, true},
		{"http://h/v1/secrets/../../v1/orders", "", false},
		{"http://h/v1/secrets/dd8731b3?x=1", "", false},
		{"http://h/v1/volumes/dd8731b3-635f-41ae-b1b9-c7a8e7fae4d9", "", false},
		{"dd8731b3-635f-41ae-b1b9-c7a8e7fae4d9", "", false},
	} {
		kind, _, err := parseRef(tt.ref)
		if (err == nil) != tt.ok || kind != tt.kind {
			t.Errorf("parseRef(%q) = %q, %v; want %q ok=%v", tt.ref, kind, err, tt.kind, tt.ok)
		}
		if err != nil && !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			t.Errorf("parseRef(%q): %v, want invalid argument", tt.ref, err)
		}
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Setenv("OS_CLOUD", "")
	t.Setenv("OS_AUTH_URL", "")
	for _, tt := range []struct {
		json string
		want string
	}{
		{`{}`, "config.auth.type: not set"},
		{`{"auth":{"type":"kerberos"}}`, `"kerberos" is not one of`},
		{`{"auth":{"type":"noauth","endpoint":"http://x"}}`, "config.auth.project_id"},
		{`{"auth":{"type":"password","auth_url":"http://x","username":"u"}}`, "config.auth.password"},
		{`{"auth":{"type":"password","auth_url":"http://x","username":"u","password":"p"}}`, "config.auth.project_name"},
		{`{"auth":{"type":"application_credential","auth_url":"http://x","application_credential_secret":"s"}}`, "config.auth.application_credential_id"},
		{`{"auth":{"type":"noauth","endpoint":"http://x","project_id":"p"},"timeout":"soon"}`, "config.timeout"},
		{`{"auth":{"type":"noauth","endpoint":"http://x","project_id":"p"},"consumer":{"name":"x"}}`, "config.consumer"},
		{`{"auth":{"type":"noauth","endpoint":"http://x","project_id":"p","pasword":"x"}}`, `"pasword"`},
	} {
		err := New(nil).Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: []byte(tt.json)})
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Configure(%s) = %v, want invalid argument containing %q", tt.json, err, tt.want)
		}
	}
	t.Setenv("OS_CLOUD", "prod")
	if s, err := parseConfig([]byte(`{}`)); err != nil || s.auth.Type != AuthCloud {
		t.Errorf("with OS_CLOUD set: %+v, %v; want auth type cloud", s.auth, err)
	}
}

func TestClassify(t *testing.T) {
	for status, want := range map[int]sdk.Code{
		404: sdk.CodeNotFound, 401: sdk.CodePermissionDenied, 403: sdk.CodePermissionDenied,
		500: sdk.CodeUnavailable, 503: sdk.CodeUnavailable, 429: sdk.CodeUnavailable, 400: sdk.CodeInvalidArgument,
	} {
		err := classify(gophercloud.ErrUnexpectedResponseCode{Actual: status,
			Body: []byte(`{"code": 1, "title": "T", "description": "the reason"}`)}, "get container", "REF")
		if sdk.CodeOf(err) != want || !strings.Contains(err.Error(), "REF") || !strings.Contains(err.Error(), "the reason") {
			t.Errorf("HTTP %d: %v, want %s naming REF and the reason", status, err, want)
		}
	}
}

func TestRetryStopsOnWhatRetryingCannotFix(t *testing.T) {
	calls := 0
	err := retry(context.Background(), 5*time.Second, func(context.Context) error {
		calls++
		return sdk.Errorf(sdk.CodeNotFound, "r", "gone")
	})
	if calls != 1 || !sdk.IsCode(err, sdk.CodeNotFound) {
		t.Fatalf("not found: %d calls, %v; want 1 call", calls, err)
	}
	calls = 0
	err = retry(context.Background(), 5*time.Second, func(context.Context) error {
		if calls++; calls < 3 {
			return sdk.Errorf(sdk.CodeUnavailable, "r", "down")
		}
		return nil
	})
	if calls != 3 || err != nil {
		t.Fatalf("unavailable twice: %d calls, %v; want success on the third", calls, err)
	}
	err = retry(context.Background(), 300*time.Millisecond, func(context.Context) error {
		return sdk.Errorf(sdk.CodeUnavailable, "r", "down")
	})
	if !sdk.IsCode(err, sdk.CodeUnavailable) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("always unavailable: %v", err)
	}
}

func TestAuthFromEnvReadsOpenrcVariables(t *testing.T) {
	for k, v := range map[string]string{"OS_AUTH_URL": "https://keystone:5000/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p",
		"OS_PROJECT_NAME": "lb", "OS_USER_DOMAIN_NAME": "users", "OS_PROJECT_DOMAIN_NAME": "projects", "OS_REGION_NAME": "R2"} {
		t.Setenv(k, v)
	}
	a, err := authFromEnv(Auth{})
	if err != nil || a.Type != AuthPassword || a.UserDomainName != "users" || a.ProjectDomainName != "projects" || a.Region != "R2" {
		t.Fatalf("authFromEnv = %+v, %v", a, err)
	}
	t.Setenv("OS_PASSWORD", "")
	if _, err := authFromEnv(Auth{}); err == nil || !strings.Contains(err.Error(), "OS_PASSWORD") {
		t.Fatalf("without OS_PASSWORD: %v, want an error naming it", err)
	}
	t.Setenv("OS_APPLICATION_CREDENTIAL_ID", "id")
	t.Setenv("OS_APPLICATION_CREDENTIAL_SECRET", "s")
	if a, err := authFromEnv(Auth{}); err != nil || a.Type != AuthApplicationCredential {
		t.Fatalf("application credential from env: %+v, %v", a, err)
	}
}
