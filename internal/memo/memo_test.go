package memo

import (
	"errors"
	"testing"
)

func TestMemo(t *testing.T) {
	m := New[int](2)
	a, b, c := KeyOf([]byte("a")), KeyOf([]byte("b")), KeyOf([]byte("c"))
	if KeyOf([]byte("ab"), []byte("c")) == KeyOf([]byte("a"), []byte("bc")) {
		t.Fatal("parts run into one another")
	}
	m.Put(a, 1)
	m.Put(b, 2)
	if v, ok := m.Get(a); !ok || v != 1 {
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	m.Put(c, 3) // full: forgets, then remembers c
	if _, ok := m.Get(a); ok {
		t.Fatal("a full memo kept its old results")
	}
	if v, ok := m.Get(c); !ok || v != 3 {
		t.Fatalf("Get(c) = %v, %v", v, ok)
	}
}

func TestRemember(t *testing.T) {
	m := New[int](8)
	calls := 0
	compute := func(err error) func() (int, error) {
		return func() (int, error) { calls++; return 7, err }
	}
	k := KeyOf([]byte("k"))
	if _, err := m.Remember(k, compute(errTest)); err != errTest || calls != 1 {
		t.Fatalf("a failing compute: %v after %d calls", err, calls)
	}
	for range 2 {
		if v, err := m.Remember(k, compute(nil)); v != 7 || err != nil {
			t.Fatalf("Remember = %v, %v", v, err)
		}
	}
	if calls != 2 {
		t.Fatalf("compute ran %d times, want 2: a failure is not remembered, a success is", calls)
	}
}

var errTest = errors.New("test")
