/**
 * What a Parquet file is written with, apart from the writer: the configuration and the event loop read these,
 * and must not load the writer (hyparquet-writer), which only the encoder threads run.
 */

export type ParquetCompression = 'zstd' | 'snappy' | 'gzip' | 'none';

export interface ParquetOptions {
  /** Compression of every page; `zstd` is what outputs default to. */
  compression: ParquetCompression;
  /**
   * A row group is written once its rows' JSON text reaches this many bytes (default 4 MiB). Athena and
   * DuckDB read a file row group by row group; the writer's memory grows with it (docs/parquet-writers.md).
   */
  rowGroupBytes?: number;
  /** Memory to write the file into, from its start (a file that outgrows it moves to memory of its own). */
  into?: ArrayBuffer;
}

/**
 * 4 MiB of decisions' JSON per row group (with ROW_OVERHEAD_BYTES a row, ~4,000 bench decisions, ~0.3 MiB of
 * zstd Parquet); a 64 MiB batch (the default max_bytes) is about twenty. Chosen for the 256 MiB RSS bound
 * rather than Athena's usual 64-128 MiB: files are the same size with 2 to 32 MiB row groups (85.1-85.7
 * bytes a bench decision at full load, 79 in process), while the encoder's memory grows with them. At full
 * load (bench steady, 20 s, one sitting) the process peaked at 287-296 MiB with 2 MiB row groups, 291-300
 * with 4 and 309-318 with 8, at the same rate; in process, over a 64 MiB batch with V8's default heap, 8, 16
 * and 32 MiB row groups took the encoder 135-175, ~240 and ~340 MiB above the process's start.
 */
export const DEFAULT_ROW_GROUP_BYTES = 4 * 1024 * 1024;
