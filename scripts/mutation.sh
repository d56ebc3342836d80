#!/usr/bin/env bash
# The mutation check: does a one-line bug in a critical rule fail a test? Not part of
# the test command (its scripted list alone takes about 19 minutes on 2 cores);
# docs/TESTING.md records its last result. Run it from anywhere in a clean checkout:
#
#   scripts/mutation.sh            every package below
#   scripts/mutation.sh gremlins   only the pure packages
#   scripts/mutation.sh scripted   only the scripted mutations
#   scripts/mutation.sh etcd       only the scripted mutations of core/relation/etcd
#                                  (agent, backend: of core/agent, core/backend)
#
# - gremlins (pinned) mutates every comparison, sign and arithmetic operator of the pure
#   packages: core/protocol, core/policy, core/caseal, core/config and sdk/certutil, and runs their
#   tests against each mutant. It works on a copy of the module.
# - core/relation/etcd, core/agent and core/backend run real etcd and plugin processes
#   and take up to a minute, too slow for every mutant: a scripted list of mutations of
#   their critical rules runs, each with the tests that must kill it, in a throwaway
#   worktree, after a baseline run of those tests on the unmutated tree. A mutant that
#   does not compile is reported as not viable, never as killed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

gremlins_version=v0.6.0
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

run_gremlins() {
  GOBIN="$work/bin" go install "github.com/go-gremlins/gremlins/cmd/gremlins@$gremlins_version"
  # The tests of these packages take under a second; compiling a mutant takes longer,
  # so the timeout gremlins derives from the tests' own time needs a wide coefficient.
  for pkg in core/protocol core/policy core/caseal core/config sdk/certutil; do
    dir=. target=./$pkg
    if [[ $pkg == sdk/* ]]; then dir=sdk target=./${pkg#sdk/}; fi
    echo "== $pkg"
    (cd "$dir" && "$work/bin/gremlins" unleash --workers 2 --timeout-coefficient 60 -S lt "$target") |
      grep -E 'LIVED|TIMED OUT|^Killed|^Test efficacy|^Mutator coverage'
  done
}

# The scripted mutations: packages whose tests need real processes (etcd, plugins) and
# take too long for every operator gremlins would mutate, so each names a critical
# rule. Each line: file ~ text to replace (exactly once) ~ replacement ~ go test -run
# pattern (. for the package's every test).
scripted_mutations='
core/relation/etcd/writes.go~cmps := []clientv3.Cmp{m.fence(electedRev)}~cmps := []clientv3.Cmp{}~TestDeposedLeaderWriteIsRefused
core/relation/etcd/writes.go~cmps = append(cmps, clientv3.Compare(clientv3.Value(key), "=", g.Value))~_ = key~TestEmbedded$|TestLargeGuardedWriteLandsInChunks
core/relation/etcd/writes.go~if len(cur.kv)+len(keys) > maxOps~if len(cur.kv)+len(keys) > 10*maxOps~TestLargeGuardedWriteLandsInChunks
core/relation/etcd/writes.go~	if !leading {~	if !leading && false {~TestEmbedded$
core/relation/etcd/cache.go~		wake = wake || f.wakes == nil || f.wakes(where)~		wake = true~TestOwnWritesWakeByTheWatchRule
core/relation/etcd/cache.go~		urgent = urgent || f.wakes == nil || f.wakes(where)~		urgent = true~TestLeaderWakesForCSRsNotForStatus
core/relation/etcd/cache.go~			continue // seen already~			_ = cur~TestAnEarlierEventDoesNotUndoAWrite
core/relation/etcd/keys.go~	for _, k := range l.schema.UnitKeys(unit) {~	for _, k := range l.schema.UnitKeys("x") {~TestEmbedded$
core/relation/etcd/campaign.go~If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0))~If()~TestEmbedded$
core/relation/etcd/session.go~	if ours {~	if !ours {~TestEmbedded$
core/relation/etcd/access.go~	perms := []permission{exact(l.member(a.Unit), readWrite)}~	perms := []permission{prefixed(l.members(), readWrite)}~TestAccessEnforcedByEtcd
core/relation/etcd/access.go~			perms = append(perms, exact(l.field(a.Unit, f), readWrite))~			perms = append(perms, prefixed(l.bag(a.Unit)+f[:0], readWrite))~TestAccessEnforcedByEtcd
core/relation/etcd/view.go~	over := !deleted && p.cap > 0 && len(value) > p.cap~	over := false~TestBagsAreBounded
core/relation/etcd/keys.go~	if p.kind == placeMember && kv.Lease == 0 {~	if false {~TestBagsAreBounded
core/relation/etcd/keys.go~			return place{} // a field the protocol does not know: not kept~			return place{kind: placeField, unit: unit, field: field}~TestBagsAreBounded
core/relation/etcd/view.go~		if n := max(r.now, r.prior); n > v.budget {~		if n := max(r.now, r.prior); n > 1000*v.budget {~TestNoisyUnitsAreNamed
core/relation/etcd/diagnose.go~	case !leader:~	case false:~TestQuorumLossIsNamed
core/relation/etcd/access.go~	if !a.LeaderEligible {~	if false {~TestAccessEnforcedByEtcd
core/relation/etcd/snapshot.go~	if !sc.wide {~	if false {~TestMembersOfOneStoreFollowTheGroupKeysOnce|TestNarrowReadsDoNotGrowWithTheGroup
core/relation/etcd/access.go~	perms := []permission{exact(l.member(a.Unit), readWrite)}~	perms := []permission{prefixed(l.member(a.Unit), readWrite)}~TestAccessEnforcedByEtcd
core/relation/etcd/tenure.go~func (m *member) leadingLocked() bool { return m.leading && time.Now().Before(m.tenure) }~func (m *member) leadingLocked() bool { return m.leading }~TestStalledKeepalivesEndTheTenure
core/relation/etcd/tenure.go~	m.tenureTimer = time.AfterFunc(time.Until(until), m.tenureLapsed)~	m.tenureTimer = time.AfterFunc(time.Hour, m.tenureLapsed)~TestStalledKeepalivesEndTheTenure
core/agent/apply.go~	if err := a.opts.Audit.Record(events...); err != nil {~	if err := a.opts.Audit.Record(events...); err != nil && false {~.
core/agent/apply.go~	dropped, err := a.opts.Member.SetLeaderData(ctx, w.kv, w.guards...)~	dropped, err := a.opts.Member.SetLeaderData(ctx, w.kv)~.
core/agent/signer.go~		req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: serial, RevokedAt: r.Departed})~		if !r.Retired { req.Revoked = append(req.Revoked, sdk.RevokedCertificate{Serial: serial, RevokedAt: r.Departed}) }~.
core/agent/signer.go~	if err := check.CheckCRL(act, string(crl.PEM)); err != nil {~	if err := check.CheckCRL(act, string(crl.PEM)); err != nil && false {~.
core/agent/signer.go~	if _, err := w.check.Check(act, string(r.Certificate.ChainPEM), a.opts.Now()); err != nil {~	if _, err := w.check.Check(act, string(r.Certificate.ChainPEM), a.opts.Now()); err != nil && false {~.
core/agent/loop.go~Audited: a.opts.Audit != nil,~Audited: false,~.
core/agent/files.go~const KeyMode = 0o600~const KeyMode = 0o640~.
core/agent/formats.go~				mode = KeyMode~				mode = f.mode~.
core/agent/files.go~	if err := f.write(PendingKeyFile, keyPEM, KeyMode); err != nil {~	if err := f.write(PendingKeyFile, keyPEM, f.mode); err != nil {~.
core/backend/command.go~	if got := hash.Sum(nil); !bytes.Equal(got, want) {~	if got := hash.Sum(nil); !bytes.Equal(got[:4], want[:4]) {~.
core/backend/guard.go~	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || ok && !time.Now().Before(deadline)) {~	if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || ok && !time.Now().Before(deadline)) && false {~.
core/backend/idle.go~		if h.warm[name] > 0 || r.idleFor(now) < h.opts.IdleStop || r.client.Exited() {~		if r.idleFor(now) < h.opts.IdleStop || r.client.Exited() {~.
core/backend/idle.go~		h.started[name] = false // its next start is on demand, not a restart~		h.started[name] = true~.
core/backend/host.go~	if h.started[name] && h.opts.OnRestart != nil {~	if h.opts.OnRestart != nil {~.
core/backend/host.go~		if !r.info.Has(c) {~		if false {~.
core/backend/host.go~StateDir: stateDir, Validity: h.opts.Validity})~StateDir: stateDir})~.
core/backend/runner.go~		syscall.Kill(-pid, syscall.SIGKILL)~		syscall.Kill(pid, syscall.SIGKILL)~.
'

run_scripted() {
  local filter=${1:-} # a package directory, or all of them
  git -C "$root" worktree add -q --detach "$work/tree" HEAD
  local list killed=0 lived=0 unviable=0
  list=$(grep -F "${filter:-/}" <<<"$scripted_mutations" | grep '~' || true)
  [ -n "$list" ] || { echo "no scripted mutation of $filter" >&2; exit 2; }
  # The baseline: each package's tests named below pass on the tree as it is, or a
  # "killed" below would mean nothing.
  while IFS='~' read -r file _ _ pattern; do
    echo "$(dirname "$file")~$pattern"
  done <<<"$list" | sort -u >"$work/baseline"
  while IFS='~' read -r pkg pattern; do
    if ! (cd "$work/tree" && go test -count=1 -timeout 10m -run "$pattern" "./$pkg" >"$work/out" 2>&1); then
      cat "$work/out" >&2
      echo "baseline: go test -run '$pattern' ./$pkg fails without any mutation; fix it first" >&2
      exit 1
    fi
    echo "    BASELINE ok ./$pkg -run '$pattern'"
  done <"$work/baseline"
  while IFS='~' read -r file old new pattern; do
    path="$work/tree/$file"
    cp "$path" "$work/orig"
    if ! python3 - "$path" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:4]
s = open(p).read()
if s.count(old) != 1:
    sys.exit("the text to replace occurs %d times in %s: %r" % (s.count(old), p, old))
open(p, "w").write(s.replace(old, new))
PY
    then
      echo "mutation list out of date; fix scripts/mutation.sh" >&2
      exit 1
    fi
    pkg=./$(dirname "$file")
    # A mutant that does not compile proves nothing about the tests: not a kill.
    if ! (cd "$work/tree" && go vet "$pkg" >"$work/out" 2>&1); then
      echo "  NOT VIABLE $file: $old"
      unviable=$((unviable + 1))
    elif (cd "$work/tree" && go test -count=1 -timeout 5m -run "$pattern" "$pkg" >/dev/null 2>&1); then
      echo "       LIVED $file: $old"
      lived=$((lived + 1))
    else
      echo "      KILLED $file: $old"
      killed=$((killed + 1))
    fi
    cp "$work/orig" "$path"
  done <<<"$list"
  echo "== scripted mutations${filter:+ of *$filter*}: Killed: $killed, Lived: $lived, Not viable: $unviable"
}

case "${1:-all}" in
  all) run_gremlins; run_scripted ;;
  gremlins) run_gremlins ;;
  scripted) run_scripted ;;
  etcd) run_scripted core/relation/etcd/ ;;
  agent | backend) run_scripted "core/$1/" ;;
  *) echo "usage: scripts/mutation.sh [gremlins | scripted | etcd | agent | backend]" >&2; exit 2 ;;
esac
