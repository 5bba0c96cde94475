# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_decnet_reconcile_global_optspecs
    string join \n state-file= db= host-uuid= docker-host= redis-url= bus= heartbeat no-publish dry-run output= detailed-exitcode docker-timeout= bus-timeout= db-busy-timeout= q/quiet v/verbose metrics-file= decnet-dir= create-table redis-ca= h/help V/version
end

function __fish_decnet_reconcile_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_decnet_reconcile_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_decnet_reconcile_using_subcommand
    set -l cmd (__fish_decnet_reconcile_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l state-file -d 'The state file written by `decnet deploy` [default: decnet-state.json in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l db -d 'DECNET\'s SQLite database, or a mysql:// URL [default: as DECNET chooses it: DECNET_DB_TYPE and the other DECNET_DB_* variables, DECNET\'s ini, else decnet.db in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l host-uuid -d 'This host\'s id; rows of other hosts are never touched [default: DECNET\'s ini ([agent] host-uuid), else local]' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l docker-host -d 'Docker Engine API endpoint' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l redis-url -d 'Redis URL of the event bus, used only when given (see --bus for the order of precedence)' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l bus -d 'The event bus: redis://… or DECNET\'s own bus, unix:///run/decnet/bus.sock. Outranks --redis-url; without either, DECNET\'s bus as DECNET\'s workers choose it: DECNET_BUS_ENABLED, DECNET_BUS_TYPE and DECNET_BUS_SOCKET from the environment or DECNET\'s ini, else DECNET\'s default socket' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l output -d 'Format of standard output' -r -f -a "table\t''
json\t''"
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l docker-timeout -d 'Longest wait for Docker before its state counts as unknown' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l bus-timeout -l redis-timeout -d 'Longest wait for the event bus before events count as lost' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l db-busy-timeout -d 'Longest wait for another writer\'s lock on the database' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l metrics-file -d 'Prometheus metrics of every pass that is not dry, written to this file for node_exporter\'s textfile collector; empty: none' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l decnet-dir -d 'DECNET\'s install dir, under which DECNET\'s root (its state file and SQLite database) is found as DECNET finds it [default: /opt/decnet]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l redis-ca -d 'The CA certificate (PEM) that signs a rediss:// bus\'s certificate; without it, the system\'s CAs. (MySQL\'s TLS is set in its URL: ssl-mode, ssl-ca, …)' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l heartbeat -d 'Publish a heartbeat on system.reconciler.health after every pass (not dry runs)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l no-publish -d 'Do not publish events'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l dry-run -d 'Compute and print the plan; change nothing'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l detailed-exitcode -d 'Exit 2 when the pass changed (or, dry, would change) anything'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -s q -l quiet -d 'Quieter: nothing at all on a converged pass; warnings and errors still show'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -s v -l verbose -d 'More verbose logs on stderr (repeat for more)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -l create-table -d 'Create the database and its fleet_deckies table when absent. Only for a database DECNET never manages: DECNET creates its own schema with its migrations on its first start, and cannot start on a table made by anyone else'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -s h -l help -d 'Print help'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -s V -l version -d 'Print version'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -f -a "once" -d 'Make one convergence pass (the default)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -f -a "doctor" -d 'Show every setting with where it came from, and check the state file, the database, Docker, the bus and DECNET\'s own reconciler; writes nothing. Exit 0 when all is well, 1 otherwise, with one line per problem saying what to do'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l state-file -d 'The state file written by `decnet deploy` [default: decnet-state.json in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l db -d 'DECNET\'s SQLite database, or a mysql:// URL [default: as DECNET chooses it: DECNET_DB_TYPE and the other DECNET_DB_* variables, DECNET\'s ini, else decnet.db in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l host-uuid -d 'This host\'s id; rows of other hosts are never touched [default: DECNET\'s ini ([agent] host-uuid), else local]' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l docker-host -d 'Docker Engine API endpoint' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l redis-url -d 'Redis URL of the event bus, used only when given (see --bus for the order of precedence)' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l bus -d 'The event bus: redis://… or DECNET\'s own bus, unix:///run/decnet/bus.sock. Outranks --redis-url; without either, DECNET\'s bus as DECNET\'s workers choose it: DECNET_BUS_ENABLED, DECNET_BUS_TYPE and DECNET_BUS_SOCKET from the environment or DECNET\'s ini, else DECNET\'s default socket' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l output -d 'Format of standard output' -r -f -a "table\t''
json\t''"
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l docker-timeout -d 'Longest wait for Docker before its state counts as unknown' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l bus-timeout -l redis-timeout -d 'Longest wait for the event bus before events count as lost' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l db-busy-timeout -d 'Longest wait for another writer\'s lock on the database' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l metrics-file -d 'Prometheus metrics of every pass that is not dry, written to this file for node_exporter\'s textfile collector; empty: none' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l decnet-dir -d 'DECNET\'s install dir, under which DECNET\'s root (its state file and SQLite database) is found as DECNET finds it [default: /opt/decnet]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l redis-ca -d 'The CA certificate (PEM) that signs a rediss:// bus\'s certificate; without it, the system\'s CAs. (MySQL\'s TLS is set in its URL: ssl-mode, ssl-ca, …)' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l heartbeat -d 'Publish a heartbeat on system.reconciler.health after every pass (not dry runs)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l no-publish -d 'Do not publish events'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l dry-run -d 'Compute and print the plan; change nothing'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l detailed-exitcode -d 'Exit 2 when the pass changed (or, dry, would change) anything'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -s q -l quiet -d 'Quieter: nothing at all on a converged pass; warnings and errors still show'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -s v -l verbose -d 'More verbose logs on stderr (repeat for more)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -l create-table -d 'Create the database and its fleet_deckies table when absent. Only for a database DECNET never manages: DECNET creates its own schema with its migrations on its first start, and cannot start on a table made by anyone else'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand once" -s h -l help -d 'Print help'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l state-file -d 'The state file written by `decnet deploy` [default: decnet-state.json in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l db -d 'DECNET\'s SQLite database, or a mysql:// URL [default: as DECNET chooses it: DECNET_DB_TYPE and the other DECNET_DB_* variables, DECNET\'s ini, else decnet.db in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l host-uuid -d 'This host\'s id; rows of other hosts are never touched [default: DECNET\'s ini ([agent] host-uuid), else local]' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l docker-host -d 'Docker Engine API endpoint' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l redis-url -d 'Redis URL of the event bus, used only when given (see --bus for the order of precedence)' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l bus -d 'The event bus: redis://… or DECNET\'s own bus, unix:///run/decnet/bus.sock. Outranks --redis-url; without either, DECNET\'s bus as DECNET\'s workers choose it: DECNET_BUS_ENABLED, DECNET_BUS_TYPE and DECNET_BUS_SOCKET from the environment or DECNET\'s ini, else DECNET\'s default socket' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l output -d 'Format of standard output' -r -f -a "table\t''
json\t''"
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l docker-timeout -d 'Longest wait for Docker before its state counts as unknown' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l bus-timeout -l redis-timeout -d 'Longest wait for the event bus before events count as lost' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l db-busy-timeout -d 'Longest wait for another writer\'s lock on the database' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l metrics-file -d 'Prometheus metrics of every pass that is not dry, written to this file for node_exporter\'s textfile collector; empty: none' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l decnet-dir -d 'DECNET\'s install dir, under which DECNET\'s root (its state file and SQLite database) is found as DECNET finds it [default: /opt/decnet]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l redis-ca -d 'The CA certificate (PEM) that signs a rediss:// bus\'s certificate; without it, the system\'s CAs. (MySQL\'s TLS is set in its URL: ssl-mode, ssl-ca, …)' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l heartbeat -d 'Publish a heartbeat on system.reconciler.health after every pass (not dry runs)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l no-publish -d 'Do not publish events'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l dry-run -d 'Compute and print the plan; change nothing'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l detailed-exitcode -d 'Exit 2 when the pass changed (or, dry, would change) anything'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -s q -l quiet -d 'Quieter: nothing at all on a converged pass; warnings and errors still show'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -s v -l verbose -d 'More verbose logs on stderr (repeat for more)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -l create-table -d 'Create the database and its fleet_deckies table when absent. Only for a database DECNET never manages: DECNET creates its own schema with its migrations on its first start, and cannot start on a table made by anyone else'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l state-file -d 'The state file written by `decnet deploy` [default: decnet-state.json in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l db -d 'DECNET\'s SQLite database, or a mysql:// URL [default: as DECNET chooses it: DECNET_DB_TYPE and the other DECNET_DB_* variables, DECNET\'s ini, else decnet.db in DECNET\'s root, found under --decnet-dir]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l host-uuid -d 'This host\'s id; rows of other hosts are never touched [default: DECNET\'s ini ([agent] host-uuid), else local]' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l docker-host -d 'Docker Engine API endpoint' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l redis-url -d 'Redis URL of the event bus, used only when given (see --bus for the order of precedence)' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l bus -d 'The event bus: redis://… or DECNET\'s own bus, unix:///run/decnet/bus.sock. Outranks --redis-url; without either, DECNET\'s bus as DECNET\'s workers choose it: DECNET_BUS_ENABLED, DECNET_BUS_TYPE and DECNET_BUS_SOCKET from the environment or DECNET\'s ini, else DECNET\'s default socket' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l output -d 'Format of standard output' -r -f -a "table\t''
json\t''"
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l docker-timeout -d 'Longest wait for Docker before its state counts as unknown' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l bus-timeout -l redis-timeout -d 'Longest wait for the event bus before events count as lost' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l db-busy-timeout -d 'Longest wait for another writer\'s lock on the database' -r
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l metrics-file -d 'Prometheus metrics of every pass that is not dry, written to this file for node_exporter\'s textfile collector; empty: none' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l decnet-dir -d 'DECNET\'s install dir, under which DECNET\'s root (its state file and SQLite database) is found as DECNET finds it [default: /opt/decnet]' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l redis-ca -d 'The CA certificate (PEM) that signs a rediss:// bus\'s certificate; without it, the system\'s CAs. (MySQL\'s TLS is set in its URL: ssl-mode, ssl-ca, …)' -r -F
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l heartbeat -d 'Publish a heartbeat on system.reconciler.health after every pass (not dry runs)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l no-publish -d 'Do not publish events'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l dry-run -d 'Compute and print the plan; change nothing'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l detailed-exitcode -d 'Exit 2 when the pass changed (or, dry, would change) anything'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -s q -l quiet -d 'Quieter: nothing at all on a converged pass; warnings and errors still show'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -s v -l verbose -d 'More verbose logs on stderr (repeat for more)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -l create-table -d 'Create the database and its fleet_deckies table when absent. Only for a database DECNET never manages: DECNET creates its own schema with its migrations on its first start, and cannot start on a table made by anyone else'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand completions" -s h -l help -d 'Print help'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand help; and not __fish_seen_subcommand_from once doctor completions help" -f -a "once" -d 'Make one convergence pass (the default)'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand help; and not __fish_seen_subcommand_from once doctor completions help" -f -a "doctor" -d 'Show every setting with where it came from, and check the state file, the database, Docker, the bus and DECNET\'s own reconciler; writes nothing. Exit 0 when all is well, 1 otherwise, with one line per problem saying what to do'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand help; and not __fish_seen_subcommand_from once doctor completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c decnet-reconcile -n "__fish_decnet_reconcile_using_subcommand help; and not __fish_seen_subcommand_from once doctor completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
