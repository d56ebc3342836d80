package barbican

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// classify turns an error from Barbican or Keystone into the sdk taxonomy, keeping the
// HTTP status and Barbican's own description: 404 NotFound, 401 and 403
// PermissionDenied, 5xx and network failures Unavailable, 400 InvalidArgument.
func classify(err error, what, ref string) error {
	if err == nil {
		return nil
	}
	var e *sdk.Error
	if errors.As(err, &e) {
		return err
	}
	var resp gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &resp) {
		msg := fmt.Sprintf("%s: HTTP %d %s", what, resp.Actual, http.StatusText(resp.Actual))
		if d := description(resp.Body); d != "" {
			msg += ": " + d
		}
		return sdk.Errorf(codeForStatus(resp.Actual), ref, "%s", msg)
	}
	if transient(err) {
		return sdk.Errorf(sdk.CodeUnavailable, ref, "%s: %v", what, err)
	}
	return sdk.Errorf(sdk.CodeInternal, ref, "%s: %v", what, err)
}

func codeForStatus(status int) sdk.Code {
	switch {
	case status == http.StatusNotFound:
		return sdk.CodeNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return sdk.CodePermissionDenied
	case status == http.StatusTooManyRequests || status >= 500:
		return sdk.CodeUnavailable
	case status == http.StatusBadRequest || status == http.StatusConflict || status == http.StatusRequestEntityTooLarge:
		return sdk.CodeInvalidArgument
	}
	return sdk.CodeInternal
}

// transient: refused or reset connections, timeouts, and a server that hung up.
func transient(err error) bool {
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr) ||
		errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "EOF")
}

// description extracts Barbican's (or Keystone's) explanation from an error body.
func description(body []byte) string {
	var v struct {
		Description string `json:"description"`
		Title       string `json:"title"`
		Error       struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	for _, s := range []string{v.Description, v.Error.Message, v.Title} {
		if s != "" {
			return s
		}
	}
	return ""
}

// retry calls fn until it succeeds, fails for a reason retrying cannot fix, or the
// deadline passes; only Unavailable is retried, with backoff from 100 ms to 2 s.
func retry(ctx context.Context, deadline time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !sdk.Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			var e *sdk.Error
			if errors.As(err, &e) {
				return sdk.Errorf(sdk.CodeUnavailable, e.Ref, "%s (gave up after %d attempts in %s)", e.Msg, attempt, deadline)
			}
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
