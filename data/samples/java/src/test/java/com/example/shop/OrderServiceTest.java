package com.example.shop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.util.List;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class OrderServiceTest {

    private OrderService service;

    @BeforeEach
    void setUp() {
        service = new OrderService();
    }

    @Test
    void placeOrderAddsShippingBelowFiftyEuros() {
        Order order = service.placeOrder("c-1", List.of(new OrderItem("book", new BigDecimal("10.00"), 2)));
        assertEquals(new BigDecimal("24.90"), order.total());
    }

    @Test
    void placeOrderRejectsAnEmptyOrder() {
        assertThrows(IllegalArgumentException.class, () -> service.placeOrder("c-1", List.of()));
    }

    @Test
    void findOrderReturnsThePlacedOrder() {
        Order order = service.placeOrder("c-2", List.of(new OrderItem("pen", new BigDecimal("60.00"), 1)));
        assertEquals(order, service.findOrder(order.id()).orElseThrow());
        assertTrue(service.findOrder(999).isEmpty());
    }
}
