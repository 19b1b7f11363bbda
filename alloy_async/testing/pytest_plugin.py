"""pytest plugin for code that uses alloy-async: the ``virtual_time`` marker and fixtures."""
