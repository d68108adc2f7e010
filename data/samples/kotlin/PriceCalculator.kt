package com.example.pricing

import java.math.BigDecimal
import java.math.RoundingMode

/**
 * A line on an invoice: how many of one product, at which unit price.
 */
data class LineItem(val sku: String, val unitPrice: BigDecimal, val quantity: Int) {
    /** Unit price times quantity. */
    fun subtotal(): BigDecimal = unitPrice.multiply(BigDecimal(quantity))
}

/**
 * Computes invoice totals with VAT and volume discounts.
 *
 * @property vatRate VAT as a fraction, e.g. 0.19
 */
class PriceCalculator(private val vatRate: BigDecimal) {

    private val discountThreshold = BigDecimal("100.00")

    /**
     * Net total of all items, with 5% off from the discount threshold on.
     */
    fun netTotal(items: List<LineItem>): BigDecimal {
        val sum = items.fold(BigDecimal.ZERO) { acc, item -> acc + item.subtotal() }
        return if (sum >= discountThreshold) sum.multiply(BigDecimal("0.95")) else sum
    }

    /** Gross total: the net total plus VAT, rounded to cents. */
    fun grossTotal(items: List<LineItem>): BigDecimal {
        val net = netTotal(items)
        return net.add(net.multiply(vatRate)).setScale(2, RoundingMode.HALF_UP)
    }

    companion object {
        /** The calculator for Germany's standard VAT rate. */
        fun german(): PriceCalculator {
            return PriceCalculator(BigDecimal("0.19"))
        }
    }
}

/**
 * Formats an amount as euros, e.g. "12.50 €".
 */
fun formatEuro(amount: BigDecimal): String {
    return amount.setScale(2, RoundingMode.HALF_UP).toPlainString() + " €"
}
