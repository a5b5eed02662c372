"""BDMS: the bulk archive."""
