//! Host readers: every read of /proc, cgroupfs and the mount table is here.
pub mod cgroup;
pub mod facts;
pub mod mounts;
pub mod podnames;
pub mod pressure;
pub mod procfs;
pub mod scan;
