"""A small shop: orders are placed, stock is reserved, e-mails are sent, the warehouse told."""
