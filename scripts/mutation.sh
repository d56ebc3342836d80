#!/usr/bin/env bash
# The mutation check: does a one-line bug in a critical rule fail a test? Not part of
# the test command (about a quarter of an hour on 2 cores); docs/TESTING.md records its
# last result. Run it from anywhere in a clean checkout:
#
#   scripts/mutation.sh            every package below
#   scripts/mutation.sh etcd       only the scripted mutations of core/relation/etcd
#
# - gremlins (pinned) mutates every comparison, sign and arithmetic operator of the pure
#   packages: core/protocol, core/policy, core/caseal and sdk/certutil, and runs their
#   tests against each mutant. It works on a copy of the module.
# - core/relation/etcd's tests need a real etcd and take about a minute, too slow for
#   every mutant: a scripted list of mutations of its critical rules runs, each with the
#   tests that must kill it, in a throwaway worktree.
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
  for pkg in core/protocol core/policy core/caseal sdk/certutil; do
    dir=. target=./$pkg
    if [[ $pkg == sdk/* ]]; then dir=sdk target=./${pkg#sdk/}; fi
    echo "== $pkg"
    (cd "$dir" && "$work/bin/gremlins" unleash --workers 2 --timeout-coefficient 60 -S lt "$target") |
      grep -E 'LIVED|TIMED OUT|^Killed|^Test efficacy|^Mutator coverage'
  done
}

# Each line: file ~ text to replace (exactly once) ~ replacement ~ go test -run pattern
etcd_mutations='
writes.go~cmps := []clientv3.Cmp{m.fence(electedRev)}~cmps := []clientv3.Cmp{}~TestDeposedLeaderWriteIsRefused
writes.go~cmps = append(cmps, clientv3.Compare(clientv3.Value(key), "=", g.Value))~_ = key~TestEmbedded$|TestLargeGuardedWriteLandsInChunks
writes.go~if len(cur.kv)+len(keys) > maxOps~if len(cur.kv)+len(keys) > 10*maxOps~TestLargeGuardedWriteLandsInChunks
writes.go~	if !leading {~	if false {~TestEmbedded$
cache.go~		wake = wake || f.wakes == nil || f.wakes(where)~		wake = true~TestOwnWritesWakeByTheWatchRule
cache.go~		urgent = urgent || f.wakes == nil || f.wakes(where)~		urgent = true~TestLeaderWakesForCSRsNotForStatus
cache.go~			continue // seen already~			_ = cur~TestAnEarlierEventDoesNotUndoAWrite
keys.go~	for _, k := range l.schema.UnitKeys(unit) {~	for _, k := range l.schema.UnitKeys("x") {~TestEmbedded$
campaign.go~If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0))~If()~TestEmbedded$
session.go~	if ours {~	if !ours {~TestEmbedded$
access.go~	perms := []permission{exact(l.member(a.Unit), readWrite)}~	perms := []permission{prefixed(l.members(), readWrite)}~TestAccessEnforcedByEtcd
access.go~			perms = append(perms, exact(l.field(a.Unit, f), readWrite))~			perms = append(perms, prefixed(l.bag(a.Unit), readWrite))~TestAccessEnforcedByEtcd
view.go~	over := !deleted && p.cap > 0 && len(value) > p.cap~	over := false~TestBagsAreBounded
keys.go~	if p.kind == placeMember && kv.Lease == 0 {~	if false {~TestBagsAreBounded
keys.go~			return place{} // a field the protocol does not know: not kept~			return place{kind: placeField, unit: unit, field: field}~TestBagsAreBounded
view.go~		if n := max(r.now, r.prior); n > v.budget {~		if n := max(r.now, r.prior); n > 1000*v.budget {~TestNoisyUnitsAreNamed
diagnose.go~	case !leader:~	case false:~TestQuorumLossIsNamed
access.go~	if !a.LeaderEligible {~	if false {~TestAccessEnforcedByEtcd
snapshot.go~	if !sc.wide {~	if false {~TestMembersOfOneStoreFollowTheGroupKeysOnce|TestNarrowReadsDoNotGrowWithTheGroup
access.go~	perms := []permission{exact(l.member(a.Unit), readWrite)}~	perms := []permission{prefixed(l.member(a.Unit), readWrite)}~TestAccessEnforcedByEtcd
tenure.go~func (m *member) leadingLocked() bool { return m.leading && time.Now().Before(m.tenure) }~func (m *member) leadingLocked() bool { return m.leading }~TestStalledKeepalivesEndTheTenure
tenure.go~	m.tenureTimer = time.AfterFunc(time.Until(until), m.tenureLapsed)~	m.tenureTimer = time.AfterFunc(time.Hour, m.tenureLapsed)~TestStalledKeepalivesEndTheTenure
'

run_etcd() {
  git -C "$root" worktree add -q --detach "$work/tree" HEAD
  local killed=0 lived=0
  while IFS='~' read -r file old new pattern; do
    [ -n "$file" ] || continue
    path="$work/tree/core/relation/etcd/$file"
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
    if (cd "$work/tree" && go test -count=1 -timeout 5m -run "$pattern" ./core/relation/etcd >/dev/null 2>&1); then
      echo "       LIVED $file: $old"
      lived=$((lived + 1))
    else
      echo "      KILLED $file: $old"
      killed=$((killed + 1))
    fi
    cp "$work/orig" "$path"
  done <<<"$etcd_mutations"
  echo "== core/relation/etcd (scripted): Killed: $killed, Lived: $lived"
}

case "${1:-all}" in
  all) run_gremlins; run_etcd ;;
  etcd) run_etcd ;;
  *) echo "usage: scripts/mutation.sh [etcd]" >&2; exit 2 ;;
esac
