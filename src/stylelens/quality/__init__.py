"""Quality measured on what the system never saw: held-out products and photos."""
