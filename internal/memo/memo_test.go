package memo

import "testing"

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
