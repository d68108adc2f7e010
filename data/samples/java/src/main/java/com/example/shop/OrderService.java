package com.example.shop;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.springframework.stereotype.Service;

/**
 * Places and looks up orders; keeps them in memory.
 */
@Service
public class OrderService {

    private static final BigDecimal FREE_SHIPPING_FROM = new BigDecimal("50.00");
    private static final BigDecimal SHIPPING_FEE = new BigDecimal("4.90");

    private final Map<Long, Order> orders = new ConcurrentHashMap<>();
    private final AtomicLong nextId = new AtomicLong(1);

    /**
     * Creates an order for the customer and stores it.
     *
     * @param customerId who orders
     * @param items what they order; must not be empty
     * @return the stored order with its new id
     */
    public Order placeOrder(String customerId, List<OrderItem> items) {
        if (items.isEmpty()) {
            throw new IllegalArgumentException("an order needs at least one item");
        }
        Order order = new Order(nextId.getAndIncrement(), customerId, List.copyOf(items), totalOf(items));
        orders.put(order.id(), order);
        return order;
    }

    /** Finds an order by id. */
    public Optional<Order> findOrder(long id) {
        return Optional.ofNullable(orders.get(id));
    }

    /** A customer's orders, newest first. */
    public List<Order> ordersOf(String customerId) {
        List<Order> result = new ArrayList<>();
        for (Order order : orders.values()) {
            if (order.customerId().equals(customerId)) {
                result.add(order);
            }
        }
        result.sort(Comparator.comparingLong(Order::id).reversed());
        return result;
    }

    /**
     * Sum of the items plus shipping; shipping is free from 50.00 on.
     */
    BigDecimal totalOf(List<OrderItem> items) {
        BigDecimal subtotal = BigDecimal.ZERO;
        for (OrderItem item : items) {
            subtotal = subtotal.add(item.price().multiply(BigDecimal.valueOf(item.quantity())));
        }
        return subtotal.compareTo(FREE_SHIPPING_FROM) >= 0 ? subtotal : subtotal.add(SHIPPING_FEE);
    }
}
