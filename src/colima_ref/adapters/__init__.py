"""Implementations of the ports: in-memory ones in ``memory``, one module per technology beside it.

Only the composition root (``colima_ref.bootstrap``) imports from here.
"""
