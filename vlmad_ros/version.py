"""Package version (kept in step with package.xml; a test checks)."""
__version__ = '0.1.0'
