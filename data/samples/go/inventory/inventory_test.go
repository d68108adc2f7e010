package inventory

import (
	"errors"
	"testing"
)

func TestReserve(t *testing.T) {
	s := NewStore()
	s.Add("c-250", "Coffee", 3)
	if err := s.Reserve("c-250", 2); err != nil {
		t.Fatalf("reserve 2 of 3: %v", err)
	}
	if err := s.Reserve("c-250", 2); !errors.Is(err, ErrOutOfStock) {
		t.Fatalf("reserve 2 of 1 left: got %v, want ErrOutOfStock", err)
	}
}

func TestReserveUnknownSKU(t *testing.T) {
	s := NewStore()
	if err := s.Reserve("nope", 1); err == nil {
		t.Fatal("reserving an unknown SKU should fail")
	}
}
