"""Thin adapters between wire protocols and ChatService."""
