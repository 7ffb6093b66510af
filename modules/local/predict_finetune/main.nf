/*
 * One fine-tuned foundation-model predictor (e.g. scgpt_finetune) as one weight-loading /
 * architecture variant, trained on one split's training perturbations and predicting its test
 * perturbations from control cells. One task per split x variant: GPU tasks stay short and
 * resumable, and every variant of a split sees the same pairs, batches and gene subsets.
 * The checkpoint directory is staged as a `path` (part of the resume hash). Label process_gpu.
 */
process PREDICT_FINETUNE {
    tag "${meta.id} ${predictor}/${variant} ${split.task} seed${split.seed} fold${split.fold}"
    label 'process_gpu'

    input:
    tuple val(meta), path(h5ad), path(pseudobulk), path(splits), val(split), val(predictor), path(checkpoint, stageAs: 'checkpoint/*'), val(variant)
    path gene_id_map

    output:
    tuple val(meta), val(split), path("*.prediction.parquet"), emit: prediction
    tuple val(meta), path("*.training.csv")                            , emit: training
    path "versions.yml"                                                , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def id_map = gene_id_map ? "--gene-id-map ${gene_id_map}" : ''
    """
    predict_finetune.py \\
        --h5ad ${h5ad} \\
        --pseudobulk ${pseudobulk} \\
        --splits ${splits} \\
        --task ${split.task} \\
        --seed ${split.seed} \\
        --fold ${split.fold} \\
        --predictor ${predictor} \\
        --variant ${variant} \\
        --checkpoint ${checkpoint} \\
        ${id_map} \\
        ${dataset_args} \\
        --dataset ${meta.id} \\
        --threads ${task.cpus} \\
        --out-dir . \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = "${meta.id}.${predictor}.${variant}.${split.task}.seed${split.seed}.fold${split.fold}"
    """
    touch ${prefix}.prediction.parquet ${prefix}.training.csv
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
