import { formatPrice } from "./format";

/** One product in the cart. */
export interface CartItem {
  sku: string;
  name: string;
  price: number;
  quantity: number;
}

/**
 * A shopping cart that merges repeated products into one line.
 */
export class Cart {
  private items: CartItem[] = [];

  constructor(private readonly currency: string = "EUR") {}

  /** Adds an item, or raises the quantity of the line that has its SKU. */
  add(item: CartItem): void {
    const line = this.items.find((i) => i.sku === item.sku);
    if (line) {
      line.quantity += item.quantity;
    } else {
      this.items.push({ ...item });
    }
  }

  /** Removes the line with this SKU; returns whether there was one. */
  remove(sku: string): boolean {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.sku !== sku);
    return this.items.length < before;
  }

  /** Sum of price times quantity over all lines. */
  total(): number {
    return this.items.reduce((sum, i) => sum + i.price * i.quantity, 0);
  }

  get size(): number {
    return this.items.reduce((n, i) => n + i.quantity, 0);
  }
}

/**
 * One line per item, e.g. "2 x Coffee  7,00 €".
 */
export function receiptLines(cart: Cart, items: CartItem[]): string[] {
  const lines = items.map((i) => `${i.quantity} x ${i.name}  ${formatPrice(i.price * i.quantity)}`);
  lines.push(`Total  ${formatPrice(cart.total())}`);
  return lines;
}

/** Whether the cart qualifies for free shipping. */
export const hasFreeShipping = (cart: Cart, threshold = 50): boolean => {
  return cart.total() >= threshold;
};
