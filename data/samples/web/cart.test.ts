import { describe, expect, it } from "vitest";
import { Cart, hasFreeShipping } from "./cart";

function coffee(quantity = 1) {
  return { sku: "c-250", name: "Coffee", price: 7, quantity };
}

describe("Cart", () => {
  it("merges items with the same SKU", () => {
    const cart = new Cart();
    cart.add(coffee());
    cart.add(coffee(2));
    expect(cart.size).toBe(3);
    expect(cart.total()).toBe(21);
  });

  it("removes a line by SKU", () => {
    const cart = new Cart();
    cart.add(coffee());
    expect(cart.remove("c-250")).toBe(true);
    expect(cart.remove("c-250")).toBe(false);
  });
});

test("shipping is free from 50 euros", () => {
  const cart = new Cart();
  cart.add(coffee(8));
  expect(hasFreeShipping(cart)).toBe(true);
});
