/** A mistake in how a command was called: exit code 2 and the usage text. */
export class UsageError extends Error {}

/** The daemon's part of `vdbak --help` (cli.ts holds the rest). */
export const DAEMON_USAGE = `The daemon (schedules, job queue, throttle, HTTP API; config: agent/config/README.md):
  vdbak daemon [--config FILE]
      run the agent: discovery, scheduled backups/shipping/forget/check, restores, API on loopback
      (no --config: embedded defaults, $VDBAK_REPO and $VDBAK_DATASTORES); SIGHUP reloads the config
  vdbak status [--json]
      the running daemon: uptime, throttle rate and why, next runs, running jobs, last results
      (no daemon: says so, with the last jobs from the catalog)
  vdbak jobs [--state S[,S]] [--kind K] [--limit N] [--json]
  vdbak job <id> [--json]
  vdbak cancel <id>
      these go through the running daemon's API, else straight to the catalog;
      --config FILE finds the repository and API token from the daemon's config
`;
