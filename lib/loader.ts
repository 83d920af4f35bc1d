// Finds and loads the native addon for this platform. The order is
//   1. GAIO_NATIVE_PATH, a custom build the user names;
//   2. gaio.<target>.node at the package's root (a checkout, built by `npm run build`);
//   3. the platform package gaio-<target> (an install from the registry, where npm
//      installed only the optionalDependency whose os, cpu and libc match).
// When none loads, one error names the platform, what was tried and how to build.

import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The C library this process runs on: the platform packages differ by it on Linux. */
function linuxLibc(): 'gnu' | 'musl' {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
  if (report?.header?.glibcVersionRuntime) return 'gnu'
  try {
    // Without a glibc version the report is from a musl build of Node, or report is disabled.
    return readFileSync('/usr/bin/ldd', 'latin1').includes('musl') ? 'musl' : 'gnu'
  } catch {
    return 'musl'
  }
}

/** The napi-rs target name: the suffix of the binary's file name and of its package's name. */
export function platformTarget(): string {
  const { platform, arch } = process
  if (platform !== 'linux') return `${platform}-${arch}`
  const libc = linuxLibc()
  return arch === 'arm' ? `linux-arm-${libc}eabihf` : `linux-${arch}-${libc}`
}

export interface LoadedAddon<T> {
  readonly binding: T
  /** The file that was loaded: tests and diagnostics name it from here. */
  readonly path: string
}

export function loadAddon<T>(): LoadedAddon<T> {
  const target = platformTarget()
  const candidates: string[] = []
  const override = process.env.GAIO_NATIVE_PATH
  if (override) candidates.push(override)
  else {
    const local = join(__dirname, '..', `gaio.${target}.node`)
    if (existsSync(local)) candidates.push(local)
    candidates.push(`gaio-${target}`)
  }
  const failures: string[] = []
  for (const candidate of candidates) {
    try {
      const path = require.resolve(candidate)
      return { binding: require(path) as T, path }
    } catch (e) {
      failures.push(`  ${candidate}: ${(e as Error).message.split('\n')[0]}`)
    }
  }
  const libc = process.platform === 'linux' ? ` (${linuxLibc()} libc)` : ''
  const error = new Error(
    `gaio: no native addon for ${process.platform}-${process.arch}${libc} could be loaded. Tried:\n` +
      failures.join('\n') +
      `\nInstall with optional dependencies (npm install without --omit=optional), or build from source in a checkout ` +
      `(Rust toolchain: npm run build) and point GAIO_NATIVE_PATH at the .node file.`,
  ) as NodeJS.ErrnoException
  error.code = 'ERR_GAIO_NO_ADDON'
  throw error
}
