//! The benchmarks `segstream bench` runs: [`single`], one clip's decode, inference and
//! end-to-end throughput per batch size; [`streams`], N streams in one process against N
//! processes, side by side. Uses the engine, the video edges and the model below it.

pub mod single;
pub mod streams;

pub use single::{BenchConfig, BenchReport, Spread, run};
