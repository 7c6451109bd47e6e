/**
 * iommuctl's config file and shell completion. Contexts as kubectl keeps them: named daemons with a URL, a session
 * and a token in ~/.config/iommud/config.json (IOMMUD_CONFIG overrides the path), one of them current.
 * Precedence for each setting: flag, then environment, then the current context, then the default.
 */
import { Command, CommanderError } from 'commander';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface CtlConfigContext {
  url?: string;
  session?: string;
  token?: string;
}
export interface CtlConfig {
  current: string | null;
  contexts: Record<string, CtlConfigContext>;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.IOMMUD_CONFIG) return env.IOMMUD_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'iommud', 'config.json');
}

export function loadConfig(path = configPath()): CtlConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { current: null, contexts: {} };
  }
  try {
    const j = JSON.parse(text) as Partial<CtlConfig>;
    return { current: typeof j.current === 'string' ? j.current : null, contexts: j.contexts && typeof j.contexts === 'object' ? j.contexts : {} };
  } catch {
    throw new CommanderError(2, 'iommuctl.usage', `${path} is not JSON: fix or remove it`);
  }
}

/** Written atomically and readable by its owner only: it holds tokens. */
function saveConfig(cfg: CtlConfig, path = configPath()): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

type Out = (data: unknown, human: string | (() => string)) => void;

/** `set-context` takes the global --url/--session/--token (commander gives them to the program, not the subcommand). */
export function registerConfigCommands(program: Command, out: Out, given: () => CtlConfigContext): void {
  const usage = (m: string): never => {
    throw new CommanderError(2, 'iommuctl.usage', m);
  };
  program
    .command('use')
    .description('make a saved context current (kubectl config use-context)')
    .argument('<name>', 'context name (see `config get-contexts`)')
    .action((name: string) => {
      const cfg = loadConfig();
      if (!cfg.contexts[name]) usage(`no context ${name} in ${configPath()}: add it with \`iommuctl config set-context ${name} --url ... --session ... --token ...\``);
      cfg.current = name;
      saveConfig(cfg);
      out({ current: name }, `switched to context ${name}`);
    });
  const config = program.command('config').description(`saved daemons and sessions (${configPath()})`);
  config
    .command('set-context')
    .description('add or change a named context from --url, --session, --token; the first one becomes current')
    .argument('<name>', 'context name')
    .action((name: string) => {
      const g = given();
      const o = Object.fromEntries(Object.entries({ url: g.url, session: g.session, token: g.token }).filter(([, v]) => v !== undefined && v !== ''));
      const cfg = loadConfig();
      cfg.contexts[name] = { ...cfg.contexts[name], ...o };
      cfg.current ??= name;
      saveConfig(cfg);
      out({ name, ...cfg.contexts[name], token: cfg.contexts[name]!.token ? '(set)' : undefined }, `context ${name} saved${cfg.current === name ? ' (current)' : ''}`);
    });
  config
    .command('get-contexts')
    .description('list saved contexts; * marks the current one')
    .action(() => {
      const cfg = loadConfig();
      const rows = Object.entries(cfg.contexts).map(([name, x]) => ({ name, current: name === cfg.current, url: x.url ?? null, session: x.session ?? null }));
      out(rows, () => rows.map((r) => `${r.current ? '*' : ' '} ${r.name.padEnd(16)} ${r.url ?? '-'} ${r.session ?? '-'}`).join('\n') || '(no contexts)');
    });
  config
    .command('delete-context')
    .description('remove a saved context')
    .argument('<name>', 'context name')
    .action((name: string) => {
      const cfg = loadConfig();
      if (!cfg.contexts[name]) usage(`no context ${name}`);
      delete cfg.contexts[name];
      if (cfg.current === name) cfg.current = null;
      saveConfig(cfg);
      out({ deleted: name }, `deleted context ${name}`);
    });

  program
    .command('completion')
    .description('print a shell completion script: eval "$(iommuctl completion bash)"')
    .argument('<shell>', 'bash or zsh')
    .action((shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') usage('completion is for bash or zsh');
      process.stdout.write(completionScript(program, shell as 'bash' | 'zsh'));
    });
}

/** Every command path with its subcommands and options, from the command tree itself (never out of date). */
function commandTable(program: Command): Map<string, string[]> {
  const table = new Map<string, string[]>();
  const walk = (cmd: Command, path: string) => {
    const words = [...cmd.commands.map((c) => c.name()), ...cmd.options.map((o) => o.long!).filter(Boolean)];
    table.set(path, words);
    for (const c of cmd.commands) walk(c, path ? `${path} ${c.name()}` : c.name());
  };
  walk(program, '');
  return table;
}

export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const table = commandTable(program);
  const cases = [...table.entries()].map(([path, words]) => `    "${path}") words="${words.join(' ')}" ;;`).join('\n');
  const fn = `_iommuctl() {
  local cur path="" w words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$w" in -*) ;; *) if [ -n "$(_iommuctl_words "\${path:+$path }$w")" ] || _iommuctl_known "\${path:+$path }$w"; then path="\${path:+$path }$w"; fi ;; esac
  done
  COMPREPLY=( $(compgen -W "$(_iommuctl_words "$path")" -- "$cur") )
}
_iommuctl_known() { case "$1" in
${[...table.keys()].filter(Boolean).map((p) => `    "${p}") return 0 ;;`).join('\n')}
  esac; return 1; }
_iommuctl_words() { local words=""; case "$1" in
${cases}
  esac; echo "$words"; }
`;
  if (shell === 'bash') return `# iommuctl completion for bash: eval "$(iommuctl completion bash)"\n${fn}complete -F _iommuctl iommuctl\n`;
  return `# iommuctl completion for zsh: eval "$(iommuctl completion zsh)"\nautoload -U +X bashcompinit && bashcompinit\n${fn}complete -F _iommuctl iommuctl\n`;
}
