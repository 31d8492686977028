//! The kernel side: the eBPF programs' loader and reader ([`tracer`]), the
//! wire records they send ([`events`]), and the kernel facts they are built
//! from at run time ([`btf`], [`tracefs`], [`layout`]), and the process
//! table as the task iterator reads it ([`tasks`]); [`check`] probes all of
//! it.
pub mod btf;
pub mod check;
pub mod events;
pub mod layout;
pub mod tasks;
pub mod tracefs;
pub mod tracer;
