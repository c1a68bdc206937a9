"""HTTP: the REST resources and the site that mounts them with the WebSockets."""
