"""REST API tests against the real Elasticsearch (FastAPI TestClient on create_app)."""
