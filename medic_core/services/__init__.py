"""Services: things expected to check in, their expectation, state and deadline."""
