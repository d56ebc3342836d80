// Package casettings is the part of a signing backend's configuration that every
// built-in signer shares, and a third party's may: the CA's name and lifetime, and the
// default certificate lifetime, with the keys and defaults the built-ins use.
package casettings

import (
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Settings is embedded in each backend's Config, so its keys sit at the top level of
// the backend's `config:` section.
type Settings struct {
	CACommonName    string `json:"ca_common_name"`
	CAValidity      string `json:"ca_validity"`
	DefaultValidity string `json:"default_validity"`
}

// Defaults returns the settings a backend starts from: a ten-year CA named cn, and
// 30-day certificates.
func Defaults(cn string) Settings {
	return Settings{CACommonName: cn, CAValidity: "87600h", DefaultValidity: "720h"}
}

// Parsed is Settings with the durations parsed.
type Parsed struct {
	CACommonName    string
	CAValidity      time.Duration
	DefaultValidity time.Duration
}

// Parse checks the settings; errors are InvalidArgument naming the key.
func (s Settings) Parse() (Parsed, error) {
	if s.CACommonName == "" {
		return Parsed{}, sdk.Errorf(sdk.CodeInvalidArgument, "config.ca_common_name", "must not be empty")
	}
	caValidity, err := duration("config.ca_validity", s.CAValidity)
	if err != nil {
		return Parsed{}, err
	}
	defValidity, err := duration("config.default_validity", s.DefaultValidity)
	if err != nil {
		return Parsed{}, err
	}
	return Parsed{CACommonName: s.CACommonName, CAValidity: caValidity, DefaultValidity: defValidity}, nil
}

func duration(key, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, sdk.Errorf(sdk.CodeInvalidArgument, key, "%q is not a positive duration like 720h", s)
	}
	return d, nil
}
