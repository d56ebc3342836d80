package testservers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSMModule is Debian's SoftHSM2 PKCS#11 library (package softhsm2).
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is a SoftHSM2 configuration of its own: a token directory that only its
// tokens use. Conf is its configuration file, for SOFTHSM2_CONF.
type SoftHSM struct {
	Conf string
	dir  string
}

// NewSoftHSM makes a SoftHSM2 configuration under dir (which the caller removes).
func NewSoftHSM(dir string) (*SoftHSM, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	return &SoftHSM{Conf: conf, dir: dir}, nil
}

// InitToken makes a token labelled label with user PIN pin (softhsm2-util), and returns
// a file holding the PIN, mode 0600.
func (s *SoftHSM) InitToken(label, pin string) (pinFile string, err error) {
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"-so")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("softhsm2-util --init-token %s: %v\n%s", label, err, out)
	}
	pinFile = filepath.Join(s.dir, label+".pin")
	return pinFile, os.WriteFile(pinFile, []byte(pin+"\n"), 0o600)
}

// StartSoftHSM is NewSoftHSM in a test's temporary directory with one token, label, and
// the process's SOFTHSM2_CONF set to it for the test.
func StartSoftHSM(t testing.TB, label string) (hsm *SoftHSM, pinFile string) {
	t.Helper()
	hsm, err := NewSoftHSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if pinFile, err = hsm.InitToken(label, "1234"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", hsm.Conf)
	return hsm, pinFile
}
