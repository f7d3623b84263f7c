"""Protocols the domain and the HTTP edge need from the outside world."""
