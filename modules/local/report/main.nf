process REPORT {
    label 'process_single'

    input:
    path(metrics, stageAs: 'metrics/*', arity: '1..*')
    path(summaries, stageAs: 'summaries/*', arity: '1..*')
    path(pseudobulks, stageAs: 'pseudobulk/*', arity: '1..*')
    path(splits, stageAs: 'splits/*', arity: '1..*')
    path(embeddings, stageAs: 'embeddings/*', arity: '0..*')
    path(gene_tables, stageAs: 'gene_tables/*', arity: '0..*')
    path(cell_metrics, stageAs: 'cell_metrics/*', arity: '0..*')
    path(training, stageAs: 'training/*', arity: '0..*')
    path(versions)

    output:
    path "leaderboard.csv"      , emit: leaderboard
    path "metrics.parquet"      , emit: metrics
    path "statistics.csv"       , emit: statistics
    path "cell_leaderboard.csv" , emit: cell_leaderboard, optional: true
    path "training.csv"         , emit: training, optional: true
    path "perturbations.csv"    , emit: perturbations
    path "knockdown.csv"        , emit: knockdown
    path "combination.csv"      , emit: combination
    path "report.html"          , emit: html
    path "software_versions.yml", emit: software_versions
    path "versions.yml"         , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def metric_args = metrics.collect { "--metrics ${it}" }.join(' ')
    def summary_args = summaries.collect { "--summary ${it}" }.join(' ')
    def pseudobulk_args = pseudobulks.collect { "--pseudobulk ${it}" }.join(' ')
    def splits_args = splits.collect { "--splits ${it}" }.join(' ')
    def embedding_args = embeddings.collect { "--embedding ${it}" }.join(' ')
    def gene_table_args = gene_tables.collect { "--gene-table ${it}" }.join(' ')
    def cell_args = cell_metrics.collect { "--cell-metrics ${it}" }.join(' ')
    def training_args = training.collect { "--training ${it}" }.join(' ')
    """
    cp ${versions} software_versions.yml
    report.py \\
        ${metric_args} \\
        ${summary_args} \\
        ${pseudobulk_args} \\
        ${splits_args} \\
        ${embedding_args} \\
        ${gene_table_args} \\
        ${cell_args} \\
        ${training_args} \\
        --software-versions software_versions.yml \\
        --outdir . \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    """
    touch leaderboard.csv metrics.parquet statistics.csv cell_leaderboard.csv training.csv perturbations.csv knockdown.csv combination.csv report.html
    cp ${versions} software_versions.yml
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
