"""The HTTP edge: Starlette routes, middleware and error bodies over the Services ports.

``colima_ref.http.app.create_app`` builds the app; nothing here imports an adapter.
"""
