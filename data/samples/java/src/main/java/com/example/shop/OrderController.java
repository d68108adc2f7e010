package com.example.shop;

import java.net.URI;
import java.util.List;

import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/**
 * HTTP API for customer orders.
 */
@RestController
@RequestMapping("/api/orders")
public class OrderController {

    private final OrderService orderService;

    public OrderController(OrderService orderService) {
        this.orderService = orderService;
    }

    /**
     * Returns one order, or 404 when there is no order with that id.
     */
    @GetMapping("/{id}")
    public ResponseEntity<Order> getOrder(@PathVariable long id) {
        return orderService.findOrder(id)
                .map(ResponseEntity::ok)
                .orElse(ResponseEntity.notFound().build());
    }

    /**
     * Lists a customer's orders, newest first.
     */
    @GetMapping
    public List<Order> listOrders(@RequestParam String customerId) {
        return orderService.ordersOf(customerId);
    }

    /**
     * Places an order and answers with its location.
     */
    @PostMapping
    public ResponseEntity<Order> placeOrder(@RequestBody OrderRequest request) {
        if (request.items().isEmpty()) {
            return ResponseEntity.badRequest().build();
        }
        Order order = orderService.placeOrder(request.customerId(), request.items());
        return ResponseEntity.created(URI.create("/api/orders/" + order.id())).body(order);
    }
}
