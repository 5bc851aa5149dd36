"""Ray's token authentication, adopted by a process that imported Ray before it knew the token."""

from __future__ import annotations

import os

from ray._raylet import AuthenticationTokenLoader, Config


def use_auth_env(env: dict[str, str]) -> None:
    """Adopt Ray auth settings (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH) after `import ray`.

    Ray reads them once, when it is imported; raympc imports Ray early, so the cached config and
    token are refreshed explicitly (the same calls Ray makes when it turns token auth on itself).
    """
    os.environ.update(env)
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
