package embedded

import "testing"

// The embedded member runs with pre-vote (docs/SECURITY.md: a member that heals after
// a partition must not depose the leader).
func TestPreVote(t *testing.T) {
	s, err := Start(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.etcd.Server.Cfg.PreVote {
		t.Fatal("the embedded etcd runs without pre-vote")
	}
}
