from sqlalchemy import inspect


def test_schema_creates_every_table(db):
    names = set(inspect(db.engine).get_table_names())
    assert {"contacts", "inquiries", "messages", "attachments", "classifications", "events",
            "receipts", "model_versions", "seen_nonces"} <= names
