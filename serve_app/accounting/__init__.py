"""What calls cost and who made them: the usage ledger (buffered, written in batches), its
stores and the database layer shared with the key store.
"""
