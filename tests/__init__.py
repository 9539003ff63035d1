"""tokenwire's tests."""
