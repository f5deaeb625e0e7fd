"""Procedural apartments: layout, furniture, textures and the class table."""
