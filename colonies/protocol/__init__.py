"""The Colonies wire protocol: keys and signatures, message structs, envelopes."""
