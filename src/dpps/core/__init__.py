"""Core: identifiers, states, errors, configuration. Depends on nothing else in dpps."""
