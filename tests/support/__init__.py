"""What the tests share, imported (conftest.py files hold fixtures only).

accounts   every test credential: the documents' test accounts, the test merchants', the sandbox tests' shops
constants  PASSWORD, FAST_HASH
apps       make_app, seed_merchants, Seed, AuthActions, EnglishClient, the live portal (LiveServer, start/stop)
factories  orders and checkouts straight into the database
pages      the order builder's form and a parser for its fields and messages
providers  sample checkout requests for the provider clients, an O'Pay notice for the portal's webhook
network    the guard that keeps every test on loopback (installed by the root conftest)
sandbox    the simulated providers as a separate party: LiveSandbox (a thread), SandboxProcess (an OS process)
receiver   the sandbox tests' recording merchant server, and a sandbox that calls it
wire       requests to the sandbox built by hand from the documents (the `wire` fixture)
browser    a customer's and a merchant's browser over HTTP (requests) for the flow tests
chromium   the Playwright helpers of the browser tests: screens, login, screenshots, checks
"""
