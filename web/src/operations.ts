import { graphql } from './gql/index.ts';

/** The dashboard's operations: codegen types each from graphql/schema.graphql. */

export const JobsQuery = graphql(`
  query DashboardJobs($first: Int!, $offset: Int!, $orderBy: [JobOrderBy!], $condition: JobCondition) {
    jobs(first: $first, offset: $offset, orderBy: $orderBy, condition: $condition) {
      totalCount
      nodes {
        id
        name
        functionSignature
        schedule
        timeZone
        runAt
        nextRunAt
        lastRunAt
        lastStatus
        enabled
        pausedReason
      }
    }
  }
`);

export const JobQuery = graphql(`
  query DashboardJob($id: BigInt!, $first: Int!, $offset: Int!) {
    job(id: $id) {
      id
      name
      functionSignature
      arguments
      schedule
      timeZone
      runAt
      nextRunAt
      lastRunAt
      lastStatus
      enabled
      pausedReason
      consecutiveFailures
      owner
      options
      createdAt
      runs(first: $first, offset: $offset, orderBy: [ID_DESC]) {
        totalCount
        nodes {
          id
          status
          trigger
          attempt
          scheduledFor
          missedBefore
          startedAt
          finishedAt
          durationMs
          latenessMs
          rowsAffected
          rowsReturned
          rejectReason
          errorSqlstate
          errorMessage
          errorDetail
          errorHint
          errorContext
        }
      }
      recent: runs(first: 40, orderBy: [ID_DESC]) {
        nodes {
          id
          status
          durationMs
          latenessMs
        }
      }
    }
  }
`);

export const RunEventsSubscription = graphql(`
  subscription DashboardRunEvents($jobId: BigInt) {
    jobRunEvents(jobId: $jobId) {
      id
      jobId
      runId
      status
    }
  }
`);

export const SchedulableFunctionsQuery = graphql(`
  query DashboardSchedulableFunctions {
    schedulableFunctions(orderBy: [FUNCTION_SIGNATURE_ASC]) {
      nodes {
        functionSignature
        functionOwner
        argumentNames
        argumentTypes
        argumentDefaults
      }
    }
  }
`);

export const PreviewQuery = graphql(`
  query DashboardPreview($schedule: String!, $timeZone: String, $count: Int) {
    previewSchedule(schedule: $schedule, timeZone: $timeZone, count: $count) {
      nodes {
        occursAt
        localTime
        shifted
        repeated
      }
    }
  }
`);

export const ScheduleJobMutation = graphql(`
  mutation DashboardScheduleJob($input: ScheduleJobInput!) {
    scheduleJob(input: $input) {
      job {
        id
        name
        nextRunAt
      }
    }
  }
`);

export const PauseJobMutation = graphql(`
  mutation DashboardPauseJob($jobId: BigInt!) {
    pauseJob(input: { jobId: $jobId }) {
      job {
        id
        enabled
        nextRunAt
        pausedReason
      }
    }
  }
`);

export const ResumeJobMutation = graphql(`
  mutation DashboardResumeJob($jobId: BigInt!) {
    resumeJob(input: { jobId: $jobId }) {
      job {
        id
        enabled
        nextRunAt
        pausedReason
      }
    }
  }
`);

export const RunJobNowMutation = graphql(`
  mutation DashboardRunJobNow($jobId: BigInt!) {
    runJobNow(input: { jobId: $jobId }) {
      job {
        id
        nextRunAt
      }
    }
  }
`);

export const CancelRunMutation = graphql(`
  mutation DashboardCancelRun($runId: BigInt!) {
    cancelRun(input: { runId: $runId }) {
      jobRun {
        id
        status
      }
    }
  }
`);

export const UnscheduleJobMutation = graphql(`
  mutation DashboardUnscheduleJob($jobId: BigInt!) {
    unscheduleJob(input: { jobId: $jobId }) {
      unscheduled
    }
  }
`);
