// Package inventory tracks stock levels and reservations per SKU.
package inventory

import (
	"errors"
	"fmt"
	"sync"
)

// ErrOutOfStock is returned when a reservation asks for more than is left.
var ErrOutOfStock = errors.New("out of stock")

// Item is one product in the warehouse.
type Item struct {
	SKU      string
	Name     string
	InStock  int
	Reserved int
}

// Store keeps items by SKU and is safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	items map[string]*Item
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{items: make(map[string]*Item)}
}

// Add puts qty units of an item into stock, creating the item if needed.
func (s *Store) Add(sku, name string, qty int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	item, ok := s.items[sku]
	if !ok {
		item = &Item{SKU: sku, Name: name}
		s.items[sku] = item
	}
	item.InStock += qty
}

// Reserve holds qty units for an order.
// It fails with ErrOutOfStock when fewer are available.
func (s *Store) Reserve(sku string, qty int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	item, ok := s.items[sku]
	if !ok {
		return fmt.Errorf("unknown sku %q", sku)
	}
	if item.InStock-item.Reserved < qty {
		return ErrOutOfStock
	}
	item.Reserved += qty
	return nil
}

// Available is what can still be reserved.
func (i Item) Available() int {
	return i.InStock - i.Reserved
}
